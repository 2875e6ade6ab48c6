import { useState } from "react";
import { api, ApiError } from "../../api/client";
import type { Page, SecretInfo } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { AdminTable } from "../../components/AdminTable";
import { ErrorMessage, Field, formatTime } from "../../components/ui";
import { providerNameProblem, providerOf } from "../../lib/secrets";
import { useResource } from "../../lib/useApi";
import { useSubmit } from "../../lib/useSubmit";

export function SecretsPage() {
  const { can } = useAuth();
  const secrets = useResource<Page<SecretInfo>>("/api/v1/secrets");
  const [provider, setProvider] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [stored, setStored] = useState<string | null>(null);
  const store = useSubmit(async () => {
    setStored(null);
    const name = provider.trim();
    const problem = providerNameProblem(name);
    if (problem) throw new ApiError(422, "invalid", `provider: ${problem}`, [{ field: "provider", message: problem }]);
    await api.put(`/api/v1/secrets/providers/${encodeURIComponent(name)}`, { api_key: apiKey });
    // The key leaves the page at once: it is write-only from here on.
    setApiKey("");
    setStored(name);
    setProvider("");
    secrets.reload();
  });
  // A path parameter's error names the parameter ("provider"); the body's, "api_key".
  const providerError =
    store.fields.provider ?? (store.error instanceof ApiError && store.error.status === 404 ? store.error.message : undefined);

  const intro = (
    <>
      <p className="hint">
        API keys of model providers, kept in the secrets store. Agents name them as <code>api_key_secret</code>;
        gateways read them at run time. They are never shown again once stored.
      </p>
      {stored && (
        <div className="alert alert-ok" role="status">
          Key for <strong>{stored}</strong> stored. Agents use it with <code>api_key_secret: {stored}</code>.
        </div>
      )}
    </>
  );

  return (
    <AdminTable title="Provider keys" plural="secrets" empty="No secrets stored yet." before={intro}
      rows={{ ...secrets, data: secrets.data?.items }} rowKey={(s) => s.name}
      columns={[
        { header: "Name", cell: (s) => <code>{s.name}</code> },
        { header: "Value", cell: () => <span className="hint">write-only</span> },
        { header: "Created", cell: (s) => formatTime(s.created_at) },
        { header: "Last replaced", cell: (s) => formatTime(s.updated_at) },
      ]}
      remove={{
        allowed: (s) => providerOf(s.name) !== null && can("secrets:delete"),
        path: (s) => `/api/v1/secrets/providers/${encodeURIComponent(providerOf(s.name) ?? "")}`,
        title: (s) => `Delete the key of ${providerOf(s.name)}?`,
        label: (s) => `Delete the key of ${providerOf(s.name)}`,
        consequence: () => <p>Agents that use it fail to call their model until a key is stored again.</p>,
      }}>
      {can("secrets:create") && (
        <form className="card" onSubmit={store.submit} noValidate>
          <h2>Store a provider key</h2>
          <p className="hint">Storing a key under a name that exists replaces it.</p>
          <ErrorMessage error={store.error} />
          <div className="form-row">
            <Field label="Provider" value={provider} error={providerError} onChange={(e) => setProvider(e.target.value)}
              required hint="e.g. openai, anthropic — letters, digits, . _ -" autoComplete="off" />
            <Field label="API key" type="password" value={apiKey} error={store.fields.api_key}
              onChange={(e) => setApiKey(e.target.value)} required autoComplete="off" />
          </div>
          <button type="submit" disabled={store.busy}>{store.busy ? "Storing…" : "Store key"}</button>
        </form>
      )}
    </AdminTable>
  );
}
