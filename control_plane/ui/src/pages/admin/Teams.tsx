import { useState } from "react";
import { api } from "../../api/client";
import type { Team } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { AdminTable } from "../../components/AdminTable";
import { ErrorMessage, Field, formatTime } from "../../components/ui";
import { usePaged } from "../../lib/useApi";
import { useSubmit } from "../../lib/useSubmit";

export function TeamsPage() {
  const { can } = useAuth();
  const teams = usePaged<Team>("/api/v1/teams");
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const create = useSubmit(async () => {
    await api.post("/api/v1/teams", { name, description });
    setName("");
    setDescription("");
    teams.reload();
  });

  return (
    <AdminTable title="Teams" plural="teams" rows={teams} rowKey={(t) => t.id}
      columns={[
        { header: "Name", cell: (t) => <code>team:{t.name}</code> },
        { header: "Description", cell: (t) => t.description || "—" },
        { header: "Members", cell: (t) => t.member_ids?.length ?? 0 },
        { header: "Created", cell: (t) => formatTime(t.created_at) },
      ]}
      remove={{
        allowed: () => can("teams:delete"),
        path: (t) => `/api/v1/teams/${t.id}`,
        title: (t) => `Delete team ${t.name}?`,
        consequence: (t) => <p>Policy bindings to <code>team:{t.name}</code> stop matching anyone.</p>,
      }}>
      {can("teams:create") && (
        <form className="card" onSubmit={create.submit} noValidate>
          <h2>Create a team</h2>
          <ErrorMessage error={create.error} />
          <div className="form-row">
            <Field label="Name" value={name} error={create.fields.name} onChange={(e) => setName(e.target.value)} required
              hint="Letters, digits, . _ -" />
            <Field label="Description" value={description} error={create.fields.description}
              onChange={(e) => setDescription(e.target.value)} />
          </div>
          <button type="submit" disabled={create.busy}>{create.busy ? "Creating…" : "Create team"}</button>
        </form>
      )}
    </AdminTable>
  );
}
