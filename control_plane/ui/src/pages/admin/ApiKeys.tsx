import { useState } from "react";
import { api } from "../../api/client";
import type { ApiKey, ApiKeyCreated } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { AdminTable } from "../../components/AdminTable";
import { CopyButton, ErrorMessage, Field, Select, formatTime } from "../../components/ui";
import { keyRoles, roleLabel } from "../../lib/roles";
import { usePaged } from "../../lib/useApi";
import { useSubmit } from "../../lib/useSubmit";

export function ApiKeysPage() {
  const { can, me } = useAuth();
  const keys = usePaged<ApiKey>("/api/v1/api-keys");
  const [name, setName] = useState("");
  const [role, setRole] = useState("developer");
  const [scopes, setScopes] = useState("");
  const [expires, setExpires] = useState("");
  // The secret lives only in this component's state: shown once, gone on dismiss or navigation.
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const grantable = keyRoles(me?.role);
  const create = useSubmit(async () => {
    const body: Record<string, unknown> = { name, role };
    const scopeList = scopes.split(",").map((s) => s.trim()).filter(Boolean);
    if (scopeList.length) body.scopes = scopeList;
    if (expires) body.expires_at = new Date(expires).toISOString();
    setCreated(await api.post<ApiKeyCreated>("/api/v1/api-keys", body));
    setName("");
    setScopes("");
    setExpires("");
    keys.reload();
  });

  const shownOnce = created && (
    <div className="alert alert-ok secret" role="status">
      <h2>Key “{created.name}” created</h2>
      <p>Copy it now: it is shown only this once and cannot be recovered.</p>
      <div className="secret-row">
        <label className="sr-only" htmlFor="new-key">New API key</label>
        <input id="new-key" readOnly value={created.key} onFocus={(e) => e.target.select()} data-testid="new-api-key" />
        <CopyButton text={created.key} />
      </div>
      <button type="button" className="button-secondary" onClick={() => setCreated(null)}>
        I have stored it
      </button>
    </div>
  );

  return (
    <AdminTable title="API keys" plural="API keys" rows={keys} rowKey={(k) => k.id} before={shownOnce}
      columns={[
        { header: "Name", cell: (k) => k.name },
        { header: "Prefix", cell: (k) => <code>{k.prefix}…</code> },
        { header: "Role", cell: (k) => roleLabel(k.role) },
        { header: "Scopes", cell: (k) => (k.scopes.length ? k.scopes.join(", ") : "all of the role") },
        { header: "Created", cell: (k) => formatTime(k.created_at) },
        { header: "Last used", cell: (k) => formatTime(k.last_used_at) },
        { header: "Expires", cell: (k) => (k.revoked_at ? `revoked ${formatTime(k.revoked_at)}` : formatTime(k.expires_at)) },
      ]}
      remove={{
        allowed: (k) => can("api_keys:delete") && !k.revoked_at,
        verb: "Revoke",
        path: (k) => `/api/v1/api-keys/${k.id}`,
        title: (k) => `Revoke ${k.name}?`,
        consequence: () => <p>Anything using this key is refused from now on.</p>,
      }}>
      {can("api_keys:create") && (
        <form className="card" onSubmit={create.submit} noValidate>
          <h2>Create an API key</h2>
          <ErrorMessage error={create.error} />
          <div className="form-row">
            <Field label="Name" value={name} error={create.fields.name} onChange={(e) => setName(e.target.value)} required
              hint="Policies bind it as apikey:<name>" />
            <Select label="Role" value={role} options={grantable} error={create.fields.role} onChange={setRole} />
            <Field label="Scopes (comma-separated, optional)" value={scopes} error={create.fields.scopes}
              onChange={(e) => setScopes(e.target.value)} hint="e.g. agents:read; empty means the role's permissions" />
            <Field label="Expires (optional)" type="datetime-local" value={expires} error={create.fields.expires_at}
              onChange={(e) => setExpires(e.target.value)} />
          </div>
          <button type="submit" disabled={create.busy}>{create.busy ? "Creating…" : "Create key"}</button>
        </form>
      )}
    </AdminTable>
  );
}
