// Run the drafts' policy tests in the page, and publish them as a signed bundle revision.
import { useState } from "react";
import { Link } from "react-router";
import { api, ApiError } from "../api/client";
import type { Published, Replay, TestFailure, TestReport } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { isGateRefusal } from "../lib/replay";
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

/** `replay`: the last finished replay of the whole draft set, which a publisher may accept. */
export function PublishPanel({ onPublished, replay }: { onPublished?(result: Published): void; replay?: Replay | null }) {
  const { can } = useAuth();
  const [open, setOpen] = useState(false);
  const [message, setMessage] = useState("");
  const [accept, setAccept] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [result, setResult] = useState<Published | null>(null);
  const acceptable = replay && replay.status === "completed" && !replay.policy_id && replay.draft ? replay : null;
  if (!can("policies:publish")) return null;
  const publish = async () => {
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = message ? { message } : {};
      if (accept && acceptable) body.accept_replay = acceptable.id;
      const published = await api.post<Published>("/api/v1/policies/publish", body);
      setResult(published);
      setOpen(false);
      setMessage("");
      setAccept(false);
      onPublished?.(published);
    } catch (e) {
      setError(e as Error);
      setOpen(false);
    } finally {
      setBusy(false);
    }
  };
  const gate = isGateRefusal(error);
  const failing =
    !gate && error instanceof ApiError && error.status === 409 && Array.isArray(error.details)
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
      {gate && (
        <p className="hint" role="note">
          The publish gate wants a replay of exactly these drafts{acceptable ? "" : ": run an impact replay of the drafts above"}
          {acceptable ? "; you may accept the replay's changes when you publish" : ""}.
        </p>
      )}
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
        {acceptable?.result && acceptable.result.risky > 0 && (
          <div className="field checkbox">
            <input id="accept-replay" type="checkbox" checked={accept} onChange={(e) => setAccept(e.target.checked)} />
            <label htmlFor="accept-replay">
              Accept the {acceptable.result.risky} risky change{acceptable.result.risky === 1 ? "" : "s"} shown by replay{" "}
              {acceptable.id.slice(0, 8)} (recorded in the audit trail)
            </label>
          </div>
        )}
      </ConfirmDialog>
    </section>
  );
}
