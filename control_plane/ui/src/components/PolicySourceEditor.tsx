// The policy text editor: CodeMirror, inline problems from /policies/validate while typing
// (debounced) and from the 422 of a save, and the save itself.
import { useEffect, useMemo, useRef, useState } from "react";
import { api, ApiError } from "../api/client";
import type { PolicyApplied, PolicyProblem, ValidationReport } from "../api/types";
import { describeProblem, problemRanges } from "../lib/diagnostics";
import { CodeEditor, type CodeEditorHandle } from "./CodeEditor";
import { ErrorMessage } from "./ui";

const VALIDATE_DELAY_MS = 500;

function problemsOf(error: unknown): PolicyProblem[] | null {
  if (error instanceof ApiError && error.status === 422 && Array.isArray(error.details)) {
    return (error.details as PolicyProblem[]).filter((d) => d && typeof d.message === "string");
  }
  return null;
}

export function PolicySourceEditor({
  initial,
  canSave,
  onSaved,
  label = "Policy source (YAML)",
}: {
  initial: string;
  canSave: boolean;
  onSaved(applied: PolicyApplied): void;
  label?: string;
}) {
  const [source, setSource] = useState(initial);
  const [problems, setProblems] = useState<PolicyProblem[]>([]);
  const [checking, setChecking] = useState(false);
  const [validateError, setValidateError] = useState<Error | null>(null);
  const [saveError, setSaveError] = useState<Error | null>(null);
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState<PolicyApplied | null>(null);
  const sequence = useRef(0);
  const editor = useRef<CodeEditorHandle | null>(null);

  useEffect(() => setSource(initial), [initial]);

  useEffect(() => {
    if (!source.trim()) {
      setProblems([]);
      return;
    }
    const mine = ++sequence.current;
    const timer = setTimeout(async () => {
      setChecking(true);
      try {
        const report = await api.post<ValidationReport>("/api/v1/policies/validate", { source });
        if (mine !== sequence.current) return;
        setProblems(report.valid ? [] : report.details);
        setValidateError(null);
      } catch (e) {
        if (mine !== sequence.current) return;
        const fromApi = problemsOf(e);
        if (fromApi) setProblems(fromApi);
        else setValidateError(e as Error);
      } finally {
        if (mine === sequence.current) setChecking(false);
      }
    }, VALIDATE_DELAY_MS);
    return () => clearTimeout(timer);
  }, [source]);

  const ranges = useMemo(() => problemRanges(source, problems), [source, problems]);

  const save = async () => {
    setSaving(true);
    setSaveError(null);
    setSaved(null);
    try {
      const applied = await api.post<PolicyApplied>("/api/v1/policies", { source });
      sequence.current++;
      setProblems([]);
      setSaved(applied);
      onSaved(applied);
    } catch (e) {
      const fromApi = problemsOf(e);
      if (fromApi) {
        sequence.current++;
        setProblems(fromApi);
      }
      setSaveError(e as Error);
    } finally {
      setSaving(false);
    }
  };

  return (
    <div className="policy-editor">
      <CodeEditor
        value={source}
        onChange={(text) => {
          setSource(text);
          setSaved(null);
        }}
        language="yaml"
        label={label}
        problems={ranges}
        handle={editor}
        readOnly={!canSave}
      />
      <div className="editor-status" aria-live="polite">
        {checking ? (
          <span className="hint">Checking…</span>
        ) : problems.length ? (
          <span className="text-error">
            {problems.length} problem{problems.length === 1 ? "" : "s"}
          </span>
        ) : source.trim() && !validateError ? (
          <span className="text-ok">No problems found</span>
        ) : null}
      </div>
      {validateError && (
        <p className="hint">Live checking is unavailable: {validateError.message}</p>
      )}
      {problems.length > 0 && (
        <ul className="problems" aria-label="Problems">
          {problems.map((problem, i) => (
            <li key={i}>
              <button
                type="button"
                className="link-button"
                onClick={() => editor.current?.focusAt(ranges[i]?.from ?? 0)}
              >
                {problem.document !== undefined && problem.document !== null ? (
                  <span className="hint">
                    document {typeof problem.document === "number" ? problem.document + 1 : problem.document} ·{" "}
                  </span>
                ) : null}
                {describeProblem(problem)}
              </button>
            </li>
          ))}
        </ul>
      )}
      {saveError && !problemsOf(saveError) && <ErrorMessage error={saveError} />}
      {saveError && problemsOf(saveError) && (
        <div className="alert alert-error" role="alert">
          Not saved: {saveError.message}
        </div>
      )}
      {saved && (
        <div className="alert alert-ok" role="status">
          Saved as draft.
          {saved.created.length > 0 && ` Created: ${saved.created.join(", ")}.`}
          {saved.updated.length > 0 && ` Updated: ${saved.updated.join(", ")}.`}
          {saved.unchanged.length > 0 && ` Unchanged: ${saved.unchanged.join(", ")}.`}
        </div>
      )}
      {canSave && (
        <div className="actions">
          <button type="button" onClick={save} disabled={saving || !source.trim()}>
            {saving ? "Saving…" : "Save draft"}
          </button>
        </div>
      )}
    </div>
  );
}
