import { useState, type FormEvent } from "react";
import { api, ApiError } from "../../api/client";
import { ROLES, type ApiKey, type ApiKeyCreated } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { ConfirmDialog, CopyButton, Empty, ErrorMessage, Field, Loading, Select, formatTime } from "../../components/ui";
import { usePaged } from "../../lib/useApi";

export function ApiKeysPage() {
  const { can, me } = useAuth();
  const keys = usePaged<ApiKey>("/api/v1/api-keys");
  const [name, setName] = useState("");
  const [role, setRole] = useState("developer");
  const [scopes, setScopes] = useState("");
  const [expires, setExpires] = useState("");
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  // The secret lives only in this component's state: shown once, gone on dismiss or navigation.
  const [created, setCreated] = useState<ApiKeyCreated | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [revokeError, setRevokeError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  const myRank = ROLES.indexOf((me?.role ?? "viewer") as (typeof ROLES)[number]);
  const grantable = ROLES.filter((_, i) => i >= myRank);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { name, role };
      const scopeList = scopes.split(",").map((s) => s.trim()).filter(Boolean);
      if (scopeList.length) body.scopes = scopeList;
      if (expires) body.expires_at = new Date(expires).toISOString();
      setCreated(await api.post<ApiKeyCreated>("/api/v1/api-keys", body));
      setName("");
      setScopes("");
      setExpires("");
      keys.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <h1>API keys</h1>
      {created && (
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
      )}
      <ErrorMessage error={keys.error ?? revokeError} />
      {keys.loading && !keys.data && <Loading what="Loading API keys" />}
      {keys.data && keys.data.length === 0 && <Empty>No API keys yet.</Empty>}
      {keys.data && keys.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Role</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {keys.data.map((k) => (
                <tr key={k.id}>
                  <td>{k.name}</td>
                  <td><code>{k.prefix}…</code></td>
                  <td>{k.role}</td>
                  <td>{k.scopes.length ? k.scopes.join(", ") : "all of the role"}</td>
                  <td>{formatTime(k.created_at)}</td>
                  <td>{formatTime(k.last_used_at)}</td>
                  <td>{k.revoked_at ? `revoked ${formatTime(k.revoked_at)}` : formatTime(k.expires_at)}</td>
                  <td>
                    {can("api_keys:delete") && !k.revoked_at && (
                      <button type="button" className="button-secondary" onClick={() => setRevoking(k)}>Revoke…</button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {keys.more && <button type="button" className="button-secondary" onClick={keys.loadMore}>Load more</button>}
        </div>
      )}
      {can("api_keys:create") && (
        <form className="card" onSubmit={create} noValidate>
          <h2>Create an API key</h2>
          <ErrorMessage error={error} />
          <div className="form-row">
            <Field label="Name" value={name} error={fields.name} onChange={(e) => setName(e.target.value)} required
              hint="Policies bind it as apikey:<name>" />
            <Select label="Role" value={role} options={grantable} error={fields.role} onChange={setRole} />
            <Field label="Scopes (comma-separated, optional)" value={scopes} error={fields.scopes}
              onChange={(e) => setScopes(e.target.value)} hint="e.g. agents:read; empty means the role's permissions" />
            <Field label="Expires (optional)" type="datetime-local" value={expires} error={fields.expires_at}
              onChange={(e) => setExpires(e.target.value)} />
          </div>
          <button type="submit" disabled={busy}>{busy ? "Creating…" : "Create key"}</button>
        </form>
      )}
      <ConfirmDialog open={revoking !== null} title={`Revoke ${revoking?.name}?`} confirmLabel="Revoke" danger
        onConfirm={async () => {
          if (!revoking) return;
          try {
            await api.delete(`/api/v1/api-keys/${revoking.id}`);
            keys.reload();
          } catch (e) {
            setRevokeError(e as Error);
          } finally {
            setRevoking(null);
          }
        }}
        onCancel={() => setRevoking(null)}>
        <p>Anything using this key is refused from now on.</p>
      </ConfirmDialog>
    </section>
  );
}
