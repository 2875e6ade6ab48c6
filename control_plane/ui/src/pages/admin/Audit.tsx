import { useState } from "react";
import type { AuditEvent, AuditChainVerification } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { Empty, ErrorMessage, Loading, formatTime } from "../../components/ui";
import { qs } from "../../api/client";
import { usePaged, useResource } from "../../lib/useApi";

function Verification() {
  const { can } = useAuth();
  const verify = useResource<AuditChainVerification>(can("audit_events:verify") ? "/api/v1/audit-events/verify" : null);
  if (!can("audit_events:verify")) return null;
  return (
    <div className="card" aria-live="polite">
      <h2>Chain verification</h2>
      <ErrorMessage error={verify.error} />
      {verify.loading && <Loading what="Verifying the hash chain" />}
      {verify.data && !verify.loading && (
        verify.data.valid ? (
          <p className="text-ok" role="status">
            Intact: {verify.data.events} events, head <code>{verify.data.head_hash.slice(0, 16)}</code>
          </p>
        ) : (
          <p className="text-error" role="alert">
            Broken at event {verify.data.first_broken_seq ?? "?"}: {verify.data.reason ?? "hash mismatch"}
          </p>
        )
      )}
      <button type="button" className="button-secondary" onClick={verify.reload} disabled={verify.loading}>
        Verify again
      </button>
    </div>
  );
}

export function AuditPage() {
  const [action, setAction] = useState("");
  const [filter, setFilter] = useState("");
  const events = usePaged<AuditEvent>(`/api/v1/audit-events${qs({ action: filter })}`);
  return (
    <section>
      <h1>Audit events</h1>
      <Verification />
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(action.trim());
        }}
      >
        <label htmlFor="audit-action">Action</label>
        <input id="audit-action" value={action} onChange={(e) => setAction(e.target.value)} placeholder="e.g. api_key.create" />
        <button type="submit" className="button-secondary">Filter</button>
      </form>
      <ErrorMessage error={events.error} />
      {events.loading && !events.data && <Loading what="Loading audit events" />}
      {events.data && events.data.length === 0 && <Empty>No audit events{filter ? ` for ${filter}` : ""}.</Empty>}
      {events.data && events.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">From</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {events.data.map((e) => (
                <tr key={e.id}>
                  <td>{e.seq}</td>
                  <td>{formatTime(e.created_at)}</td>
                  <td>{e.actor_label ?? e.actor_type}</td>
                  <td><code>{e.action}</code></td>
                  <td>{e.target_type}{e.target_id ? ` ${e.target_id.slice(0, 8)}` : ""}</td>
                  <td>{e.source_ip ?? "—"}</td>
                  <td>
                    <details>
                      <summary>Show</summary>
                      <pre className="report">{JSON.stringify(e.summary, null, 2)}</pre>
                    </details>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {events.more && (
            <button type="button" className="button-secondary" onClick={events.loadMore} disabled={events.loading}>
              Load more
            </button>
          )}
        </div>
      )}
    </section>
  );
}
