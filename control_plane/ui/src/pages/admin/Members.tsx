import { useState } from "react";
import { api } from "../../api/client";
import type { Member } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { AdminTable } from "../../components/AdminTable";
import { ErrorMessage, Field, Select, formatTime } from "../../components/ui";
import { memberRoles, roleLabel } from "../../lib/roles";
import { usePaged } from "../../lib/useApi";
import { useSubmit } from "../../lib/useSubmit";

function RoleCell({ member, onChanged }: { member: Member; onChanged(): void }) {
  const { can, me } = useAuth();
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  if (!can("users:update") || member.id === me?.id) return <>{roleLabel(member.role)}</>;
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
        {memberRoles(can("users:grant_owner"), member.role).map((r) => <option key={r} value={r}>{roleLabel(r)}</option>)}
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
  const add = useSubmit(async () => {
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
  });

  return (
    <AdminTable title="Members and roles" plural="members" empty="No members." rows={members} rowKey={(m) => m.id}
      columns={[
        { header: "Email", cell: (m) => <>{m.email}{m.id === me?.id && <span className="hint"> (you)</span>}</> },
        { header: "Name", cell: (m) => m.display_name ?? "—" },
        { header: "Role", cell: (m) => <RoleCell member={m} onChanged={members.reload} /> },
        { header: "Joined", cell: (m) => formatTime(m.joined_at) },
      ]}
      remove={{
        allowed: (m) => can("users:delete") && m.id !== me?.id,
        verb: "Remove",
        path: (m) => `/api/v1/users/${m.id}`,
        title: (m) => `Remove ${m.email}?`,
        label: (m) => `Remove ${m.email}`,
        consequence: () => <p>They lose access to this organisation at once.</p>,
      }}>
      {can("users:create") && (
        <form className="card" onSubmit={add.submit} noValidate>
          <h2>Add a member</h2>
          <ErrorMessage error={add.error} />
          <div className="form-row">
            <Field label="Email" type="email" value={email} error={add.fields.email} onChange={(e) => setEmail(e.target.value)} required />
            <Field label="Display name" value={displayName} error={add.fields.display_name} onChange={(e) => setDisplayName(e.target.value)} />
            <Field label="Initial password" type="password" autoComplete="new-password" value={password}
              error={add.fields.password} hint="Optional; they can also be an existing user"
              onChange={(e) => setPassword(e.target.value)} />
            <Select label="Role" value={role} error={add.fields.role}
              options={memberRoles(can("users:grant_owner"))} onChange={setRole} />
          </div>
          <button type="submit" disabled={add.busy}>{add.busy ? "Adding…" : "Add member"}</button>
        </form>
      )}
    </AdminTable>
  );
}
