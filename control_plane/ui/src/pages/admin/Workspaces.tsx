import { useState } from "react";
import { api } from "../../api/client";
import type { Workspace } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { AdminTable } from "../../components/AdminTable";
import { ErrorMessage, Field, formatTime } from "../../components/ui";
import { usePaged } from "../../lib/useApi";
import { useSubmit } from "../../lib/useSubmit";

export function WorkspacesPage() {
  const { can } = useAuth();
  const workspaces = usePaged<Workspace>("/api/v1/workspaces");
  const [name, setName] = useState("");
  const [environment, setEnvironment] = useState("");
  const [description, setDescription] = useState("");
  const create = useSubmit(async () => {
    await api.post("/api/v1/workspaces", { name, environment, description });
    setName("");
    setEnvironment("");
    setDescription("");
    workspaces.reload();
  });

  return (
    <AdminTable title="Workspaces" plural="workspaces" rows={workspaces} rowKey={(w) => w.id}
      columns={[
        { header: "Name", cell: (w) => w.name },
        { header: "Environment", cell: (w) => w.environment },
        { header: "Description", cell: (w) => w.description || "—" },
        { header: "Created", cell: (w) => formatTime(w.created_at) },
      ]}
      remove={{
        allowed: () => can("workspaces:delete"),
        path: (w) => `/api/v1/workspaces/${w.id}`,
        title: (w) => `Delete workspace ${w.name}?`,
        consequence: () => <p>Bindings scoped to this workspace stop applying.</p>,
      }}>
      {can("workspaces:create") && (
        <form className="card" onSubmit={create.submit} noValidate>
          <h2>Create a workspace</h2>
          <ErrorMessage error={create.error} />
          <div className="form-row">
            <Field label="Name" value={name} error={create.fields.name} onChange={(e) => setName(e.target.value)} required />
            <Field label="Environment" value={environment} error={create.fields.environment}
              onChange={(e) => setEnvironment(e.target.value)} required hint="e.g. dev, staging, prod" />
            <Field label="Description" value={description} error={create.fields.description}
              onChange={(e) => setDescription(e.target.value)} />
          </div>
          <button type="submit" disabled={create.busy}>{create.busy ? "Creating…" : "Create workspace"}</button>
        </form>
      )}
    </AdminTable>
  );
}
