import { useMemo, useState } from "react";
import { api } from "../api/client";
import type { Decision } from "../api/types";
import { CodeEditor } from "../components/CodeEditor";
import { ErrorMessage, Field, Select } from "../components/ui";
import { defaultForm, mergeDecisionInput, type DecisionForm } from "../lib/decisionInput";

const pretty = (value: unknown) => JSON.stringify(value, null, 2);

export function DecisionResult({ decision }: { decision: Decision }) {
  const { outcome, reasons = [], matched_rules = [], decision_id, bundle_revision, key_id, explanation } = decision;
  return (
    <div className="decision" aria-live="polite">
      <p>
        Outcome: <strong className={`outcome outcome-${outcome}`} data-testid="outcome">{outcome.replace("_", " ")}</strong>
      </p>
      <h3>Reasons</h3>
      {reasons.length ? (
        <ul>{reasons.map((r, i) => <li key={i}>{r}</li>)}</ul>
      ) : (
        <p className="hint">No reasons given.</p>
      )}
      <h3>Matched rules</h3>
      {matched_rules.length ? (
        <ul>
          {matched_rules.map((r, i) => (
            <li key={i}><code>{typeof r === "string" ? r : JSON.stringify(r)}</code></li>
          ))}
        </ul>
      ) : (
        <p className="hint">No rules matched.</p>
      )}
      <dl className="facts">
        <dt>Decision id</dt><dd><code>{decision_id ?? "—"}</code></dd>
        <dt>Bundle revision</dt><dd>{bundle_revision ?? "drafts"}</dd>
        <dt>Key id</dt><dd>{key_id ?? "—"}</dd>
      </dl>
      {explanation !== undefined && explanation !== null && (
        <details>
          <summary>Explanation</summary>
          <pre className="report">{typeof explanation === "string" ? explanation : pretty(explanation)}</pre>
        </details>
      )}
    </div>
  );
}

export function SimulatePage() {
  const [form, setForm] = useState<DecisionForm>(defaultForm);
  const [text, setText] = useState(() => pretty(mergeDecisionInput("{}", defaultForm)));
  const [draft, setDraft] = useState(true);
  const [decision, setDecision] = useState<Decision | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);

  const update = (patch: Partial<DecisionForm>) => {
    const next = { ...form, ...patch };
    setForm(next);
    setText(pretty(mergeDecisionInput(text, next)));
  };

  const parsed = useMemo(() => {
    try {
      const value = JSON.parse(text);
      return value && typeof value === "object" && !Array.isArray(value)
        ? { value, error: null }
        : { value: null, error: "The decision input must be a JSON object." };
    } catch (e) {
      return { value: null, error: `Invalid JSON: ${(e as Error).message}` };
    }
  }, [text]);

  const simulate = async () => {
    if (!parsed.value) return;
    setBusy(true);
    setError(null);
    try {
      setDecision(await api.post<Decision>("/api/v1/policies/simulate", { input: parsed.value, draft }));
    } catch (e) {
      setDecision(null);
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>Simulate a decision</h1>
      <p className="hint">
        Fill in who does what to which resource; the JSON below is exactly what is sent and what Rego sees as{" "}
        <code>input</code>. Edit it freely for fields the form lacks.
      </p>
      <div className="grid-2">
        <form
          className="card"
          onSubmit={(e) => {
            e.preventDefault();
            void simulate();
          }}
        >
          <Field label="Principal" value={form.principal} onChange={(e) => update({ principal: e.target.value })}
            hint="user:<email>, team:<name>, apikey:<name> or service:<name>" />
          <Field label="Roles (comma-separated)" value={form.roles} onChange={(e) => update({ roles: e.target.value })} />
          <Field label="Teams (comma-separated)" value={form.teams} onChange={(e) => update({ teams: e.target.value })} />
          <Field label="Action" value={form.action} onChange={(e) => update({ action: e.target.value })} />
          <Field label="Resource" value={form.resource} onChange={(e) => update({ resource: e.target.value })}
            hint="<type>:<name>, e.g. agent:support-bot" />
          <Field label="Workspace" value={form.workspace} onChange={(e) => update({ workspace: e.target.value })} />
          <Select label="Channel" value={form.channel} options={["api", "cli", "mcp"]}
            onChange={(channel) => update({ channel: channel as DecisionForm["channel"] })} />
          <Field label="MCP tool name" value={form.tool} onChange={(e) => update({ tool: e.target.value })}
            hint="Only for MCP tools/call" />
          <div className="field checkbox">
            <input id="against-drafts" type="checkbox" checked={draft} onChange={(e) => setDraft(e.target.checked)} />
            <label htmlFor="against-drafts">Against the drafts (unchecked: what is published)</label>
          </div>
          <button type="submit" disabled={busy || !parsed.value}>
            {busy ? "Simulating…" : "Simulate"}
          </button>
        </form>
        <div>
          <CodeEditor value={text} onChange={setText} language="json" label="Decision input (JSON)" minHeight="22rem" />
          {parsed.error && <p className="field-error" role="alert">{parsed.error}</p>}
        </div>
      </div>
      <ErrorMessage error={error} />
      {decision && (
        <section className="card" aria-labelledby="result-heading">
          <h2 id="result-heading">Decision</h2>
          <DecisionResult decision={decision} />
        </section>
      )}
    </section>
  );
}
