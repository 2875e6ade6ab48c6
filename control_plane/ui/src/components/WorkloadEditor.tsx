// The designer frame shared by agents and pipelines: a form and a YAML view of one document,
// saved through POST /api/v1/{agents|pipelines}; problems shown at their field and line.
import { useMemo, useState, type ReactNode } from "react";
import { api, ApiError } from "../api/client";
import type { PolicyProblem, WorkloadApplied } from "../api/types";
import { describeProblem, problemRanges } from "../lib/diagnostics";
import { parseYaml, toYaml } from "../lib/workloads";
import { CodeEditor } from "./CodeEditor";
import { ErrorMessage } from "./ui";

type Doc = Record<string, unknown>;

export function WorkloadEditor({
  collection,
  initial,
  canSave,
  onSaved,
  renderForm,
}: {
  collection: "agents" | "pipelines";
  initial: Doc;
  canSave: boolean;
  onSaved(applied: WorkloadApplied): void;
  /** The form over `doc`; `fieldError(path)` is the server's problem at or below that path. */
  renderForm(doc: Doc, change: (doc: Doc) => void, fieldError: (path: string) => string | undefined): ReactNode;
}) {
  const [view, setView] = useState<"form" | "yaml">("form");
  const [doc, setDoc] = useState<Doc>(initial);
  const [source, setSource] = useState(() => toYaml(initial));
  const [yamlError, setYamlError] = useState<string | null>(null);
  const [problems, setProblems] = useState<PolicyProblem[]>([]);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState<WorkloadApplied | null>(null);
  const ranges = useMemo(() => problemRanges(source, problems), [source, problems]);
  const label = collection === "agents" ? "Agent" : "Pipeline";

  const change = (next: Doc) => {
    setDoc(next);
    setSource(toYaml(next));
    setSaved(null);
  };
  const show = (next: "form" | "yaml") => {
    if (next === "form") {
      const parsed = parseYaml(source);
      setYamlError(parsed.error);
      if (!parsed.doc) return; // stay in YAML until it parses
      setDoc(parsed.doc);
    }
    setView(next);
  };
  const save = async () => {
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const applied = await api.post<WorkloadApplied>(`/api/v1/${collection}`, { source });
      setProblems([]);
      setSaved(applied);
      onSaved(applied);
    } catch (e) {
      if (e instanceof ApiError && e.status === 422 && Array.isArray(e.details)) {
        setProblems((e.details as PolicyProblem[]).filter((d) => d && typeof d.message === "string"));
      } else setProblems([]);
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  // A problem at the path or below it (spec.routes.billing and spec.agents[1] show at their field).
  const fieldError = (path: string) =>
    problems.find((p) => p.field === path || p.field?.startsWith(`${path}.`) || p.field?.startsWith(`${path}[`))?.message;
  const tabs: ["form" | "yaml", string][] = [["form", "Form"], ["yaml", "YAML"]];

  return (
    <div className="workload-editor">
      <div role="tablist" aria-label={`${label} views`} className="tabs">
        {tabs.map(([id, text]) => (
          <button key={id} type="button" role="tab" id={`${collection}-${id}-tab`} aria-selected={view === id}
            aria-controls={`${collection}-${id}-panel`} onClick={() => show(id)}>
            {text}
          </button>
        ))}
      </div>
      {yamlError && <p className="field-error" role="alert">Fix the YAML first — {yamlError}</p>}
      <div role="tabpanel" id={`${collection}-${view}-panel`} aria-labelledby={`${collection}-${view}-tab`}>
        {view === "form" ? (
          renderForm(doc, change, fieldError)
        ) : (
          <CodeEditor value={source} onChange={(v) => { setSource(v); setSaved(null); }} language="yaml"
            label={`${label} source (YAML)`} problems={ranges} />
        )}
      </div>
      {problems.length > 0 && (
        <ul className="problems text-error" aria-label="Problems">
          {problems.map((p, i) => <li key={i}>{describeProblem(p)}</li>)}
        </ul>
      )}
      <ErrorMessage error={error} />
      {saved && (
        <p className="alert alert-ok" role="status">
          Saved {saved.items.map((w) => `${w.name} v${w.latest_version}`).join(", ")}
          {saved.unchanged.length ? " (unchanged)" : ""}.
        </p>
      )}
      {canSave && (
        <button type="button" onClick={save} disabled={busy}>{busy ? "Saving…" : `Save ${label.toLowerCase()}`}</button>
      )}
    </div>
  );
}
