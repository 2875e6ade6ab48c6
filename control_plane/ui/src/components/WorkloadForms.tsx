import { useId } from "react";
import {
  PATTERN_ROLES,
  PATTERNS,
  PROVIDERS,
  agentFormOf,
  applyAgentForm,
  applyPipelineForm,
  roleValuesOf,
  type AgentForm,
} from "../lib/workloads";
import { PipelineCanvas } from "./PipelineCanvas";
import { Field, Select } from "./ui";

type Doc = Record<string, unknown>;
type FieldError = (path: string) => string | undefined;
const obj = (v: unknown): Doc => (v && typeof v === "object" && !Array.isArray(v) ? (v as Doc) : {});

function TextArea({ label, value, onChange, error, rows = 4 }: {
  label: string; value: string; onChange(v: string): void; error?: string; rows?: number;
}) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <textarea id={id} rows={rows} value={value} aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-error` : undefined} onChange={(e) => onChange(e.target.value)} />
      {error && <small id={`${id}-error`} className="field-error" role="alert">{error}</small>}
    </div>
  );
}

export function AgentFormView({ doc, change, fieldError }: { doc: Doc; change(doc: Doc): void; fieldError: FieldError }) {
  const form = agentFormOf(doc);
  const set = (patch: Partial<AgentForm>) => change(applyAgentForm(doc, { ...form, ...patch }));
  return (
    <div className="form-row">
      <Field label="Agent name" value={form.name} error={fieldError("metadata.name")} onChange={(e) => set({ name: e.target.value })}
        hint="Callers reach it as agent:<name>" />
      <Field label="Description" value={form.description} onChange={(e) => set({ description: e.target.value })} />
      <Select label="Model provider" value={form.provider} options={PROVIDERS} error={fieldError("spec.model.provider")}
        onChange={(provider) => set({ provider })} />
      <Field label="Model name" value={form.model} error={fieldError("spec.model.name")} onChange={(e) => set({ model: e.target.value })} />
      <Field label="Temperature (optional)" inputMode="decimal" value={form.temperature}
        error={fieldError("spec.model.parameters.temperature")} onChange={(e) => set({ temperature: e.target.value })} />
      <Field label="Cost estimate per call, USD (optional)" inputMode="decimal" value={form.costEstimate}
        error={fieldError("spec.cost_estimate_usd")} onChange={(e) => set({ costEstimate: e.target.value })}
        hint="Budgets reserve this before a call" />
      <Field label="Agents it may call as tools (comma-separated)" value={form.toolAgents}
        error={fieldError("spec.tools")} onChange={(e) => set({ toolAgents: e.target.value })}
        hint="HTTP and MCP tools: use the YAML view" />
      <TextArea label="System prompt" value={form.systemPrompt} error={fieldError("spec.system_prompt")}
        onChange={(systemPrompt) => set({ systemPrompt })} />
    </div>
  );
}

export function PipelineFormView({ doc, change, fieldError }: { doc: Doc; change(doc: Doc): void; fieldError: FieldError }) {
  const metadata = obj(doc.metadata);
  const spec = obj(doc.spec);
  const name = typeof metadata.name === "string" ? metadata.name : "";
  const description = typeof metadata.description === "string" ? metadata.description : "";
  const pattern = typeof spec.pattern === "string" && spec.pattern in PATTERN_ROLES ? spec.pattern : "sequential";
  const values = roleValuesOf({ ...spec, pattern });
  const update = (patch: { name?: string; description?: string; pattern?: string; values?: Record<string, string> }) => {
    const nextPattern = patch.pattern ?? pattern;
    // Switching patterns carries the agents over where the new pattern has a list of them.
    const team = values.agents ?? values.debaters ?? values.workers ?? "";
    const carried: Record<string, string> = patch.pattern ? { agents: team, debaters: team, workers: team } : {};
    change(applyPipelineForm(doc, patch.name ?? name, patch.description ?? description, nextPattern, { ...values, ...carried, ...patch.values }));
  };
  return (
    <div className="pipeline-designer">
      <div className="form-row">
        <Field label="Pipeline name" value={name} error={fieldError("metadata.name")} onChange={(e) => update({ name: e.target.value })} />
        <Field label="Description" value={description} onChange={(e) => update({ description: e.target.value })} />
        <Select label="Pattern" value={pattern} options={PATTERNS} error={fieldError("spec.pattern")}
          onChange={(p) => update({ pattern: p })} />
      </div>
      <div className="form-row">
        {PATTERN_ROLES[pattern].map((role) => {
          const message = fieldError(`spec.${role.key}`);
          const set = (v: string) => update({ values: { [role.key]: v } });
          if (role.shape === "routes")
            return <TextArea key={role.key} label={role.label} value={values[role.key] ?? ""} error={message} onChange={set} rows={3} />;
          if (role.shape === "choice")
            return <Select key={role.key} label={role.label} value={values[role.key] || (role.options?.[0] ?? "")}
              options={role.options ?? []} error={message} onChange={set} />;
          return (
            <Field key={role.key} label={`${role.label}${role.required ? "" : " (optional)"}`} value={values[role.key] ?? ""}
              error={message} inputMode={role.shape === "number" ? "decimal" : undefined}
              hint={role.shape === "list" ? "Agent names, comma-separated" : undefined} onChange={(e) => set(e.target.value)} />
          );
        })}
      </div>
      <PipelineCanvas spec={{ ...obj(doc.spec), pattern }} name={name} />
    </div>
  );
}
