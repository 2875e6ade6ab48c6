import { useState } from "react";
import { api } from "../api/client";
import type { BundleRevision, Published } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ConfirmDialog, Empty, ErrorMessage, Loading, formatBytes, formatTime } from "../components/ui";
import { usePaged } from "../lib/useApi";

export function BundlesPage() {
  const { can } = useAuth();
  const bundles = usePaged<BundleRevision>("/api/v1/bundles");
  const [target, setTarget] = useState<BundleRevision | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [done, setDone] = useState<Published | null>(null);
  const latest = bundles.data?.reduce((max, b) => Math.max(max, b.revision), 0) ?? 0;

  const rollback = async () => {
    if (!target) return;
    setBusy(true);
    setError(null);
    try {
      setDone(await api.post<Published>("/api/v1/policies/rollback", { revision: target.revision }));
      setTarget(null);
      bundles.reload();
    } catch (e) {
      setError(e as Error);
      setTarget(null);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>Bundle revisions</h1>
      <p className="hint">Each publish or rollback signs a new revision; sidecars load the newest.</p>
      <ErrorMessage error={bundles.error ?? error} />
      {done && (
        <div className="alert alert-ok" role="status">
          Rolled back: revision {done.revision} now serves the policies of the chosen revision.
        </div>
      )}
      {bundles.loading && !bundles.data && <Loading what="Loading bundle revisions" />}
      {bundles.data && bundles.data.length === 0 && <Empty>Nothing published yet. Publish from the Policies page.</Empty>}
      {bundles.data && bundles.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Revision</th>
                <th scope="col">Created</th>
                <th scope="col">By</th>
                <th scope="col">Policies</th>
                <th scope="col">Size</th>
                <th scope="col">Key</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {bundles.data.map((b) => (
                <tr key={b.revision}>
                  <td>
                    <strong>{b.revision}</strong>
                    {b.revision === latest && <span className="badge badge-published">current</span>}
                    {b.message && <div className="hint">{b.message}</div>}
                  </td>
                  <td>{formatTime(b.created_at)}</td>
                  <td>{b.created_by ?? "—"}</td>
                  <td>
                    {Object.entries(b.policies).map(([name, version]) => (
                      <div key={name}>{name} v{version}</div>
                    ))}
                  </td>
                  <td>{formatBytes(b.size)}</td>
                  <td><code>{b.key_id}</code></td>
                  <td>
                    {can("policies:publish") && b.revision !== latest && (
                      <button type="button" className="button-secondary" onClick={() => setTarget(b)}>
                        Roll back to {b.revision}…
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {bundles.more && (
            <button type="button" className="button-secondary" onClick={bundles.loadMore}>Load more</button>
          )}
        </div>
      )}
      <ConfirmDialog
        open={target !== null}
        title={`Roll back to revision ${target?.revision}?`}
        confirmLabel="Roll back"
        danger
        busy={busy}
        onConfirm={rollback}
        onCancel={() => setTarget(null)}
      >
        <p>A new revision is signed with the policies of revision {target?.revision}; every gateway enforces it once it syncs.</p>
      </ConfirmDialog>
    </section>
  );
}
