// Run the drafts' policy tests in the page, and publish them as a signed bundle revision.
import { useState } from "react";
import { Link } from "react-router";
import { api, ApiError } from "../api/client";
import type { Published, TestFailure, TestReport } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ConfirmDialog, ErrorMessage, formatBytes } from "./ui";

function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function Failures({ failures }: { failures: TestFailure[] }) {
  if (!failures.length) return null;
  return (
    <div className="table-wrap">
      <table>
        <caption className="sr-only">Failing test cases</caption>
        <thead>
          <tr>
            <th scope="col">Test</th>
            <th scope="col">Case</th>
            <th scope="col">Expected</th>
            <th scope="col">Actual</th>
            <th scope="col">Message</th>
          </tr>
        </thead>
        <tbody>
          {failures.map((f, i) => (
            <tr key={i}>
              <td>{f.test ?? "—"}</td>
              <td>{f.case ?? "—"}</td>
              <td><code>{show(f.expected ?? "—")}</code></td>
              <td><code>{show(f.actual ?? "—")}</code></td>
              <td>{f.message ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function TestsPanel() {
  const [report, setReport] = useState<TestReport | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    setError(null);
    try {
      setReport(await api.post<TestReport>("/api/v1/policies/test", { draft: true }));
    } catch (e) {
      setReport(null);
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="tests-heading">
      <h2 id="tests-heading">Policy tests</h2>
      <p className="hint">Runs every PolicyTest case against the drafts.</p>
      <button type="button" onClick={run} disabled={busy}>
        {busy ? "Running…" : "Run tests"}
      </button>
      <ErrorMessage error={error} />
      {report && (
        <div aria-live="polite">
          <p className={report.passed ? "text-ok" : "text-error"} role="status">
            {report.passed
              ? `All ${report.total} test case${report.total === 1 ? "" : "s"} passed`
              : `${report.failures.length} of ${report.total} test cases failed`}
          </p>
          <Failures failures={report.failures} />
          {report.report && (
            <details>
              <summary>Full report</summary>
              <pre className="report">{report.report}</pre>
            </details>
          )}
        </div>
      )}
    </section>
  );
}

export function PublishPanel({ onPublished }: { onPublished?(result: Published): void }) {
  const { can } = useAuth();
  const [open, setOpen] = useState(false);
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [result, setResult] = useState<Published | null>(null);
  if (!can("policies:publish")) return null;
  const publish = async () => {
    setBusy(true);
    setError(null);
    try {
      const published = await api.post<Published>("/api/v1/policies/publish", message ? { message } : {});
      setResult(published);
      setOpen(false);
      setMessage("");
      onPublished?.(published);
    } catch (e) {
      setError(e as Error);
      setOpen(false);
    } finally {
      setBusy(false);
    }
  };
  const failing =
    error instanceof ApiError && error.status === 409 && Array.isArray(error.details)
      ? (error.details as TestFailure[])
      : [];
  return (
    <section className="card" aria-labelledby="publish-heading">
      <h2 id="publish-heading">Publish</h2>
      <p className="hint">Compiles the drafts into a signed bundle; gateways' sidecars pick it up.</p>
      <button type="button" onClick={() => setOpen(true)}>
        Publish drafts…
      </button>
      <ErrorMessage error={error} />
      <Failures failures={failing} />
      {result && (
        <div className="alert alert-ok" role="status">
          Published bundle revision <strong>{result.revision}</strong> (key {result.key_id},{" "}
          {formatBytes(result.size)}). <Link to="/bundles">See bundle revisions</Link>
        </div>
      )}
      <ConfirmDialog
        open={open}
        title="Publish the drafts?"
        confirmLabel="Publish"
        busy={busy}
        onConfirm={publish}
        onCancel={() => setOpen(false)}
      >
        <p>Every gateway of this organisation will enforce the drafted policies once it syncs.</p>
        <div className="field">
          <label htmlFor="publish-message">Message (optional)</label>
          <input id="publish-message" value={message} onChange={(e) => setMessage(e.target.value)} maxLength={1000} />
        </div>
      </ConfirmDialog>
    </section>
  );
}
