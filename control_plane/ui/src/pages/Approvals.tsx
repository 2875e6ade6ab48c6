import { useEffect, useId, useRef, useState } from "react";
import { Link } from "react-router";
import { api, ApiError, qs } from "../api/client";
import type { Approval } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { Empty, ErrorMessage, Loading, StatusBadge, formatTime } from "../components/ui";
import { ago } from "../lib/fleet";
import { usePaged } from "../lib/useApi";

const VIEWS = [
  ["pending", "Pending"],
  ["approved", "Approved"],
  ["denied", "Denied"],
  ["expired", "Expired"],
] as const;
type View = (typeof VIEWS)[number][0];

/** Approve or deny with an optional comment, in a modal dialog. */
function DecideDialog({
  request,
  verdict,
  onDone,
  onCancel,
}: {
  request: Approval;
  verdict: "approve" | "deny";
  onDone(decided: Approval): void;
  onCancel(): void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const commentId = useId();
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      const body = comment.trim() ? { comment: comment.trim() } : {};
      onDone(await api.post<Approval>(`/api/v1/approvals/${encodeURIComponent(request.id)}/${verdict}`, body));
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} aria-labelledby={titleId} onCancel={(e) => { e.preventDefault(); onCancel(); }}>
      <form method="dialog" onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <h2 id={titleId}>{verdict === "approve" ? "Approve" : "Deny"} {request.action} on {request.resource}?</h2>
        <p>
          Requested by <strong>{request.principal}</strong>.{" "}
          {verdict === "approve"
            ? "They get a single-use grant for exactly this call."
            : "The call stays refused."}
        </p>
        <div className="field">
          <label htmlFor={commentId}>Comment (optional)</label>
          <textarea id={commentId} rows={3} value={comment} onChange={(e) => setComment(e.target.value)}
            aria-invalid={fields.comment ? true : undefined} />
          {fields.comment && <small className="field-error" role="alert">{fields.comment}</small>}
        </div>
        <ErrorMessage error={error} />
        <div className="actions">
          <button type="button" className="button-secondary" onClick={onCancel}>Cancel</button>
          <button type="submit" className={verdict === "deny" ? "button-danger" : ""} disabled={busy}>
            {busy ? "Working…" : verdict === "approve" ? "Approve" : "Deny"}
          </button>
        </div>
      </form>
    </dialog>
  );
}

export function ApprovalsPage() {
  const { can } = useAuth();
  const [view, setView] = useState<View>("pending");
  const requests = usePaged<Approval>(`/api/v1/approvals${qs({ status: view, limit: 100 })}`);
  const [deciding, setDeciding] = useState<{ request: Approval; verdict: "approve" | "deny" } | null>(null);
  const [done, setDone] = useState<Approval | null>(null);
  const mayDecide = can("approvals:decide");
  return (
    <section>
      <h1>Approvals</h1>
      <p className="hint">
        Calls a policy held for approval. Approving gives the caller a single-use grant for that exact call;
        nobody decides their own request.
      </p>
      <div role="tablist" aria-label="Approval requests" className="tabs">
        {VIEWS.map(([id, label]) => (
          <button key={id} type="button" role="tab" aria-selected={view === id} onClick={() => { setView(id); setDone(null); }}>
            {label}
          </button>
        ))}
      </div>
      {done && (
        <p className="alert alert-ok" role="status">
          {done.status === "approved" ? "Approved" : "Denied"}: {done.action} on {done.resource} for {done.principal}.
        </p>
      )}
      <ErrorMessage error={requests.error} />
      {requests.loading && !requests.data && <Loading what="Loading approval requests" />}
      {requests.data && requests.data.length === 0 && (
        <Empty>{view === "pending" ? "Nothing waits for approval." : `No ${view} requests.`}</Empty>
      )}
      {requests.data && requests.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Requested</th>
                <th scope="col">Principal</th>
                <th scope="col">Action</th>
                <th scope="col">Resource</th>
                <th scope="col">Why held</th>
                <th scope="col">{view === "pending" ? "Expires" : "Decision"}</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {requests.data.map((r) => (
                <tr key={r.id}>
                  <td title={formatTime(r.created_at)}>{ago(r.created_at)}</td>
                  <td>{r.principal}</td>
                  <td>{r.action}</td>
                  <td>{r.resource}</td>
                  <td>
                    {r.reasons.join("; ") || "—"}
                    {r.approver_roles.length > 0 && <div className="hint">Approvers: {r.approver_roles.join(", ")}</div>}
                  </td>
                  <td>
                    {r.status === "pending" ? (
                      formatTime(r.expires_at)
                    ) : (
                      <>
                        <StatusBadge status={r.status} />
                        {r.decided_by && <div>by {r.decided_by} {formatTime(r.decided_at)}</div>}
                        {r.comment && <div className="hint">“{r.comment}”</div>}
                      </>
                    )}
                  </td>
                  <td>
                    {can("decisions:read") && (
                      <Link to={`/decisions?decision=${encodeURIComponent(r.id)}`}>Decision</Link>
                    )}
                    {r.status === "pending" && mayDecide && (
                      <div className="toolbar">
                        <button type="button" onClick={() => setDeciding({ request: r, verdict: "approve" })}
                          aria-label={`Approve ${r.action} on ${r.resource} for ${r.principal}`}>
                          Approve…
                        </button>
                        <button type="button" className="button-secondary"
                          onClick={() => setDeciding({ request: r, verdict: "deny" })}
                          aria-label={`Deny ${r.action} on ${r.resource} for ${r.principal}`}>
                          Deny…
                        </button>
                      </div>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {requests.more && (
            <button type="button" className="button-secondary" onClick={requests.loadMore}>Load more</button>
          )}
        </div>
      )}
      {deciding && (
        <DecideDialog request={deciding.request} verdict={deciding.verdict} onCancel={() => setDeciding(null)}
          onDone={(decided) => {
            setDeciding(null);
            setDone(decided);
            requests.reload();
          }} />
      )}
    </section>
  );
}
