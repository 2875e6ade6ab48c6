import { useState, type FormEvent } from "react";
import { api, ApiError } from "../../api/client";
import type { Page, SecretInfo } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { ConfirmDialog, Empty, ErrorMessage, Field, Loading, formatTime } from "../../components/ui";
import { providerNameProblem, providerOf } from "../../lib/secrets";
import { useResource } from "../../lib/useApi";

export function SecretsPage() {
  const { can } = useAuth();
  const secrets = useResource<Page<SecretInfo>>("/api/v1/secrets");
  const [provider, setProvider] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [stored, setStored] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  const [deleteError, setDeleteError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  // A path parameter's error names the parameter ("provider"); the body's, "api_key".
  const providerError = fields.provider ?? (error instanceof ApiError && error.status === 404 ? error.message : undefined);

  const store = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    setStored(null);
    const name = provider.trim();
    const problem = providerNameProblem(name);
    if (problem) {
      setError(new ApiError(422, "invalid", `provider: ${problem}`, [{ field: "provider", message: problem }]));
      return;
    }
    setBusy(true);
    try {
      await api.put(`/api/v1/secrets/providers/${encodeURIComponent(name)}`, { api_key: apiKey });
      // The key leaves the page at once: it is write-only from here on.
      setApiKey("");
      setStored(name);
      setProvider("");
      secrets.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  const items = secrets.data?.items;
  return (
    <section>
      <h1>Provider keys</h1>
      <p className="hint">
        API keys of model providers, kept in the secrets store. Agents name them as <code>api_key_secret</code>;
        gateways read them at run time. They are never shown again once stored.
      </p>
      {stored && (
        <div className="alert alert-ok" role="status">
          Key for <strong>{stored}</strong> stored. Agents use it with <code>api_key_secret: {stored}</code>.
        </div>
      )}
      <ErrorMessage error={secrets.error ?? deleteError} />
      {secrets.loading && !items && <Loading what="Loading secrets" />}
      {items && items.length === 0 && <Empty>No secrets stored yet.</Empty>}
      {items && items.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Value</th>
                <th scope="col">Created</th>
                <th scope="col">Last replaced</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {items.map((s) => {
                const p = providerOf(s.name);
                return (
                  <tr key={s.name}>
                    <td><code>{s.name}</code></td>
                    <td className="hint">write-only</td>
                    <td>{formatTime(s.created_at)}</td>
                    <td>{formatTime(s.updated_at)}</td>
                    <td>
                      {p && can("secrets:delete") && (
                        <button type="button" className="button-secondary" onClick={() => setDeleting(p)}
                          aria-label={`Delete the key of ${p}`}>
                          Delete…
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {can("secrets:create") && (
        <form className="card" onSubmit={store} noValidate>
          <h2>Store a provider key</h2>
          <p className="hint">Storing a key under a name that exists replaces it.</p>
          <ErrorMessage error={error} />
          <div className="form-row">
            <Field label="Provider" value={provider} error={providerError} onChange={(e) => setProvider(e.target.value)}
              required hint="e.g. openai, anthropic — letters, digits, . _ -" autoComplete="off" />
            <Field label="API key" type="password" value={apiKey} error={fields.api_key}
              onChange={(e) => setApiKey(e.target.value)} required autoComplete="off" />
          </div>
          <button type="submit" disabled={busy}>{busy ? "Storing…" : "Store key"}</button>
        </form>
      )}
      <ConfirmDialog open={deleting !== null} title={`Delete the key of ${deleting}?`} confirmLabel="Delete" danger
        onConfirm={async () => {
          if (!deleting) return;
          setDeleteError(null);
          try {
            await api.delete(`/api/v1/secrets/providers/${encodeURIComponent(deleting)}`);
            secrets.reload();
          } catch (e) {
            setDeleteError(e as Error);
          } finally {
            setDeleting(null);
          }
        }}
        onCancel={() => setDeleting(null)}>
        <p>Agents that use it fail to call their model until a key is stored again.</p>
      </ConfirmDialog>
    </section>
  );
}
