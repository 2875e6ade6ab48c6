import { useState } from "react";
import { Link } from "react-router";
import { api } from "../api/client";
import type { Policy, PolicySettings, Replay } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { PublishPanel, TestsPanel } from "../components/DraftActions";
import { ReplayPanel } from "../components/ReplayPanel";
import { Empty, ErrorMessage, Loading, StatusBadge, formatTime } from "../components/ui";
import { usePaged, useResource } from "../lib/useApi";

function PublishGate() {
  const { can } = useAuth();
  const settings = useResource<PolicySettings>("/api/v1/policies/settings");
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  if (!settings.data) return <ErrorMessage error={settings.error} />;
  return (
    <div className="field checkbox">
      <input id="require-replay" type="checkbox" checked={settings.data.require_replay_before_publish}
        disabled={!can("policies:publish") || busy}
        onChange={async (e) => {
          setBusy(true);
          setError(null);
          try {
            await api.patch("/api/v1/policies/settings", { require_replay_before_publish: e.target.checked });
            settings.reload();
          } catch (err) {
            setError(err as Error);
          } finally {
            setBusy(false);
          }
        }} />
      <label htmlFor="require-replay">
        Publish only after a replay of the drafts shows no allow→deny, allow→approval or deny→allow change
      </label>
      <ErrorMessage error={error} />
    </div>
  );
}

export function PoliciesPage() {
  const { can } = useAuth();
  const policies = usePaged<Policy>("/api/v1/policies");
  const [replay, setReplay] = useState<Replay | null>(null);
  return (
    <section>
      <div className="page-header">
        <h1>Policies</h1>
        {can("policies:create") && (
          <Link className="button" to="/policies/new">
            New policy
          </Link>
        )}
      </div>
      <ErrorMessage error={policies.error} />
      {policies.loading && !policies.data && <Loading what="Loading policies" />}
      {policies.data && policies.data.length === 0 && (
        <Empty>
          <p>No policies yet.</p>
          {can("policies:create") && <Link to="/policies/new">Author your first policy</Link>}
        </Empty>
      )}
      {policies.data && policies.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Status</th>
                <th scope="col">Latest version</th>
                <th scope="col">Published version</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {policies.data.map((p) => (
                <tr key={p.id}>
                  <td>
                    <Link to={`/policies/${p.id}`}>{p.name}</Link>
                  </td>
                  <td>{p.kind}</td>
                  <td>
                    <StatusBadge status={p.status} />
                    {p.published_version !== null && p.published_version !== p.latest_version && p.status !== "deleted" && (
                      <span className="hint"> unpublished changes</span>
                    )}
                  </td>
                  <td>v{p.latest_version}</td>
                  <td>{p.published_version ? `v${p.published_version}` : "—"}</td>
                  <td>{formatTime(p.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {policies.more && (
            <button type="button" className="button-secondary" onClick={policies.loadMore} disabled={policies.loading}>
              Load more
            </button>
          )}
        </div>
      )}
      <div className="grid-2">
        <TestsPanel />
        <PublishPanel onPublished={policies.reload} replay={replay} />
      </div>
      {can("policies:simulate") && <ReplayPanel onReplay={setReplay} />}
      <PublishGate />
    </section>
  );
}
