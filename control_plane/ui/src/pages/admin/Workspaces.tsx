import { useState, type FormEvent } from "react";
import { api, ApiError } from "../../api/client";
import type { Workspace } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { ConfirmDialog, Empty, ErrorMessage, Field, Loading, formatTime } from "../../components/ui";
import { usePaged } from "../../lib/useApi";

export function WorkspacesPage() {
  const { can } = useAuth();
  const workspaces = usePaged<Workspace>("/api/v1/workspaces");
  const [name, setName] = useState("");
  const [environment, setEnvironment] = useState("");
  const [description, setDescription] = useState("");
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState<Workspace | null>(null);
  const [removeError, setRemoveError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/v1/workspaces", { name, environment, description });
      setName("");
      setEnvironment("");
      setDescription("");
      workspaces.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>Workspaces</h1>
      <ErrorMessage error={workspaces.error ?? removeError} />
      {workspaces.loading && !workspaces.data && <Loading what="Loading workspaces" />}
      {workspaces.data && workspaces.data.length === 0 && <Empty>No workspaces yet.</Empty>}
      {workspaces.data && workspaces.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Environment</th>
                <th scope="col">Description</th>
                <th scope="col">Created</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {workspaces.data.map((w) => (
                <tr key={w.id}>
                  <td>{w.name}</td>
                  <td>{w.environment}</td>
                  <td>{w.description || "—"}</td>
                  <td>{formatTime(w.created_at)}</td>
                  <td>
                    {can("workspaces:delete") && (
                      <button type="button" className="button-secondary" onClick={() => setRemoving(w)}>Delete…</button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {workspaces.more && <button type="button" className="button-secondary" onClick={workspaces.loadMore}>Load more</button>}
        </div>
      )}
      {can("workspaces:create") && (
        <form className="card" onSubmit={create} noValidate>
          <h2>Create a workspace</h2>
          <ErrorMessage error={error} />
          <div className="form-row">
            <Field label="Name" value={name} error={fields.name} onChange={(e) => setName(e.target.value)} required />
            <Field label="Environment" value={environment} error={fields.environment}
              onChange={(e) => setEnvironment(e.target.value)} required hint="e.g. dev, staging, prod" />
            <Field label="Description" value={description} error={fields.description} onChange={(e) => setDescription(e.target.value)} />
          </div>
          <button type="submit" disabled={busy}>{busy ? "Creating…" : "Create workspace"}</button>
        </form>
      )}
      <ConfirmDialog open={removing !== null} title={`Delete workspace ${removing?.name}?`} confirmLabel="Delete" danger
        onConfirm={async () => {
          if (!removing) return;
          try {
            await api.delete(`/api/v1/workspaces/${removing.id}`);
            workspaces.reload();
          } catch (e) {
            setRemoveError(e as Error);
          } finally {
            setRemoving(null);
          }
        }}
        onCancel={() => setRemoving(null)}>
        <p>Bindings scoped to this workspace stop applying.</p>
      </ConfirmDialog>
    </section>
  );
}
