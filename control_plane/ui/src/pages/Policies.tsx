import { Link } from "react-router";
import type { Policy } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { PublishPanel, TestsPanel } from "../components/DraftActions";
import { Empty, ErrorMessage, Loading, StatusBadge, formatTime } from "../components/ui";
import { usePaged } from "../lib/useApi";

export function PoliciesPage() {
  const { can } = useAuth();
  const policies = usePaged<Policy>("/api/v1/policies");
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
        <PublishPanel onPublished={policies.reload} />
      </div>
    </section>
  );
}
