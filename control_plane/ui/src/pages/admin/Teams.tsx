import { useState, type FormEvent } from "react";
import { api, ApiError } from "../../api/client";
import type { Team } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { ConfirmDialog, Empty, ErrorMessage, Field, Loading, formatTime } from "../../components/ui";
import { usePaged } from "../../lib/useApi";

export function TeamsPage() {
  const { can } = useAuth();
  const teams = usePaged<Team>("/api/v1/teams");
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState<Team | null>(null);
  const [removeError, setRemoveError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/v1/teams", { name, description });
      setName("");
      setDescription("");
      teams.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>Teams</h1>
      <ErrorMessage error={teams.error ?? removeError} />
      {teams.loading && !teams.data && <Loading what="Loading teams" />}
      {teams.data && teams.data.length === 0 && <Empty>No teams yet.</Empty>}
      {teams.data && teams.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Description</th>
                <th scope="col">Members</th>
                <th scope="col">Created</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {teams.data.map((t) => (
                <tr key={t.id}>
                  <td><code>team:{t.name}</code></td>
                  <td>{t.description || "—"}</td>
                  <td>{t.member_ids?.length ?? 0}</td>
                  <td>{formatTime(t.created_at)}</td>
                  <td>
                    {can("teams:delete") && (
                      <button type="button" className="button-secondary" onClick={() => setRemoving(t)}>Delete…</button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {teams.more && <button type="button" className="button-secondary" onClick={teams.loadMore}>Load more</button>}
        </div>
      )}
      {can("teams:create") && (
        <form className="card" onSubmit={create} noValidate>
          <h2>Create a team</h2>
          <ErrorMessage error={error} />
          <div className="form-row">
            <Field label="Name" value={name} error={fields.name} onChange={(e) => setName(e.target.value)} required
              hint="Letters, digits, . _ -" />
            <Field label="Description" value={description} error={fields.description} onChange={(e) => setDescription(e.target.value)} />
          </div>
          <button type="submit" disabled={busy}>{busy ? "Creating…" : "Create team"}</button>
        </form>
      )}
      <ConfirmDialog open={removing !== null} title={`Delete team ${removing?.name}?`} confirmLabel="Delete" danger
        onConfirm={async () => {
          if (!removing) return;
          try {
            await api.delete(`/api/v1/teams/${removing.id}`);
            teams.reload();
          } catch (e) {
            setRemoveError(e as Error);
          } finally {
            setRemoving(null);
          }
        }}
        onCancel={() => setRemoving(null)}>
        <p>Policy bindings to <code>team:{removing?.name}</code> stop matching anyone.</p>
      </ConfirmDialog>
    </section>
  );
}
