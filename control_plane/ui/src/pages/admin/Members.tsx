import { useState, type FormEvent } from "react";
import { api, ApiError } from "../../api/client";
import { ROLES, type Member } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { ConfirmDialog, Empty, ErrorMessage, Field, Loading, Select, formatTime } from "../../components/ui";
import { usePaged } from "../../lib/useApi";

function RoleCell({ member, onChanged }: { member: Member; onChanged(): void }) {
  const { can, me } = useAuth();
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  if (!can("users:update") || member.id === me?.id) return <>{member.role.replace("_", " ")}</>;
  const options = can("users:grant_owner") ? ROLES : ROLES.filter((r) => r !== "owner" || member.role === "owner");
  return (
    <>
      <label className="sr-only" htmlFor={`role-${member.id}`}>Role of {member.email}</label>
      <select
        id={`role-${member.id}`}
        value={member.role}
        disabled={busy}
        onChange={async (e) => {
          setBusy(true);
          setError(null);
          try {
            await api.patch(`/api/v1/users/${member.id}`, { role: e.target.value });
            onChanged();
          } catch (err) {
            setError(err as Error);
          } finally {
            setBusy(false);
          }
        }}
      >
        {options.map((r) => <option key={r} value={r}>{r.replace("_", " ")}</option>)}
      </select>
      {error && <small className="field-error" role="alert">{error.message}</small>}
    </>
  );
}

export function MembersPage() {
  const { can, me } = useAuth();
  const members = usePaged<Member>("/api/v1/users");
  const [email, setEmail] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState("viewer");
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState<Member | null>(null);
  const [removeError, setRemoveError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};

  const add = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/v1/users", {
        email,
        role,
        ...(displayName ? { display_name: displayName } : {}),
        ...(password ? { password } : {}),
      });
      setEmail("");
      setDisplayName("");
      setPassword("");
      members.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!removing) return;
    try {
      await api.delete(`/api/v1/users/${removing.id}`);
      members.reload();
    } catch (e) {
      setRemoveError(e as Error);
    } finally {
      setRemoving(null);
    }
  };

  return (
    <section>
      <h1>Members and roles</h1>
      <ErrorMessage error={members.error ?? removeError} />
      {members.loading && !members.data && <Loading what="Loading members" />}
      {members.data && members.data.length === 0 && <Empty>No members.</Empty>}
      {members.data && members.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Joined</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {members.data.map((m) => (
                <tr key={m.id}>
                  <td>{m.email}{m.id === me?.id && <span className="hint"> (you)</span>}</td>
                  <td>{m.display_name ?? "—"}</td>
                  <td><RoleCell member={m} onChanged={members.reload} /></td>
                  <td>{formatTime(m.joined_at)}</td>
                  <td>
                    {can("users:delete") && m.id !== me?.id && (
                      <button type="button" className="button-secondary" onClick={() => setRemoving(m)}>
                        Remove…
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {members.more && <button type="button" className="button-secondary" onClick={members.loadMore}>Load more</button>}
        </div>
      )}
      {can("users:create") && (
        <form className="card" onSubmit={add} noValidate>
          <h2>Add a member</h2>
          <ErrorMessage error={error} />
          <div className="form-row">
            <Field label="Email" type="email" value={email} error={fields.email} onChange={(e) => setEmail(e.target.value)} required />
            <Field label="Display name" value={displayName} error={fields.display_name} onChange={(e) => setDisplayName(e.target.value)} />
            <Field label="Initial password" type="password" autoComplete="new-password" value={password}
              error={fields.password} hint="Optional; they can also be an existing user"
              onChange={(e) => setPassword(e.target.value)} />
            <Select label="Role" value={role} error={fields.role}
              options={can("users:grant_owner") ? ROLES : ROLES.filter((r) => r !== "owner")} onChange={setRole} />
          </div>
          <button type="submit" disabled={busy}>{busy ? "Adding…" : "Add member"}</button>
        </form>
      )}
      <ConfirmDialog open={removing !== null} title={`Remove ${removing?.email}?`} confirmLabel="Remove" danger
        onConfirm={remove} onCancel={() => setRemoving(null)}>
        <p>They lose access to this organisation at once.</p>
      </ConfirmDialog>
    </section>
  );
}
