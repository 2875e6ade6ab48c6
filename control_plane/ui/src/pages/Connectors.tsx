// Data connectors (M14): create one (the password or secret key is write-only), test it, see
// which agents name it and the latest decisions on it (each SQL call is decided per table,
// each object call for its bucket/key).
import { useState } from "react";
import { api, ApiError } from "../api/client";
import type { Connector, DecisionLog, Page } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { AdminTable } from "../components/AdminTable";
import { Drawer, Empty, ErrorMessage, Field, Loading, Select, StatusBadge, formatTime } from "../components/ui";
import {
  CONNECTOR_TYPES,
  DEFAULT_PORTS,
  EMPTY_FORM,
  TLS_MODES,
  TYPE_LABELS,
  createBody,
  isObjectStore,
  decisionsPath,
  describeTest,
  formProblems,
  target,
  type ConnectorForm,
  type TestResult,
} from "../lib/connectors";
import { usePaged, useResource } from "../lib/useApi";
import { useSubmit } from "../lib/useSubmit";

function RecentDecisions({ connector }: { connector: Connector }) {
  const decisions = useResource<Page<DecisionLog>>(decisionsPath(connector.name));
  if (decisions.loading && !decisions.data) return <Loading what="Loading decisions" />;
  if (decisions.error) return <ErrorMessage error={decisions.error} />;
  const items = decisions.data?.items ?? [];
  if (items.length === 0) return <Empty>No calls through {connector.name} yet.</Empty>;
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            <th>Time</th>
            <th>Principal</th>
            <th>Operation</th>
            <th>Object</th>
            <th>Outcome</th>
          </tr>
        </thead>
        <tbody>
          {items.map((d) => {
            const attributes = (d.input?.resource as { attributes?: Record<string, unknown> } | undefined)?.attributes ?? {};
            return (
              <tr key={d.decision_id}>
                <td>{formatTime(d.time)}</td>
                <td>{d.principal ?? "—"}</td>
                <td>{String(attributes.operation ?? d.action ?? "—")} ({d.action ?? "—"})</td>
                <td><code>{String(attributes.object ?? "—")}</code></td>
                <td><StatusBadge status={d.outcome} /></td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function ConnectorsPage() {
  const { can } = useAuth();
  const connectors = usePaged<Connector>("/api/v1/connectors");
  const [form, setForm] = useState<ConnectorForm>(EMPTY_FORM);
  const [problems, setProblems] = useState<Record<string, string>>({});
  const [tested, setTested] = useState<{ name: string; type: string; result: TestResult } | null>(null);
  const [testError, setTestError] = useState<Error | null>(null);
  const [testing, setTesting] = useState<string | null>(null);
  const [watching, setWatching] = useState<Connector | null>(null);
  const set = (change: Partial<ConnectorForm>) => setForm((f) => ({ ...f, ...change }));

  const create = useSubmit(async () => {
    const found = formProblems(form);
    setProblems(found);
    if (Object.keys(found).length > 0) {
      throw new ApiError(422, "invalid", "Check the highlighted fields.", Object.entries(found).map(([field, message]) => ({ field, message })));
    }
    await api.post("/api/v1/connectors", createBody(form));
    setForm(EMPTY_FORM); // the password leaves the page at once
    connectors.reload();
  });
  const error = (field: string) => create.fields[field] ?? problems[field];

  const test = async (connector: Connector) => {
    setTesting(connector.id);
    setTestError(null);
    setTested(null);
    try {
      const result = await api.post<TestResult>(`/api/v1/connectors/${connector.id}/test`, {});
      setTested({ name: connector.name, type: connector.type, result });
    } catch (e) {
      setTestError(e as Error);
    } finally {
      setTesting(null);
    }
  };

  const intro = (
    <>
      <p className="hint">
        Databases agents may query with <code>sql.query</code>. Every statement is parsed and each table it touches is a
        decision on <code>connector:&lt;name&gt;</code> (action <code>read</code> or <code>write</code>, object{" "}
        <code>table:&lt;schema&gt;.&lt;table&gt;</code>). Object stores (S3, Azure Blob) serve{" "}
        <code>objects.list</code>, <code>objects.get</code> and <code>objects.put</code>, each a decision with object{" "}
        <code>&lt;bucket&gt;/&lt;key&gt;</code> (a listing: <code>&lt;bucket&gt;/&lt;prefix&gt;</code>). Passwords and
        secret keys are write-only; gateways read them at run time.
      </p>
      {tested && (
        <div className={`alert ${tested.result.ok ? "alert-ok" : "alert-error"}`} role="status" data-testid="connector-test">
          <strong>{tested.name}:</strong> {describeTest(tested.result, tested.type)}
        </div>
      )}
    </>
  );

  return (
    <AdminTable title="Connectors" plural="connectors" before={intro} error={testError}
      rows={connectors} rowKey={(c) => c.id}
      columns={[
        { header: "Name", cell: (c) => <strong>{c.name}</strong> },
        { header: "Type", cell: (c) => TYPE_LABELS[c.type] ?? c.type },
        { header: "Target", cell: (c) => <code>{target(c.settings, c.type)}</code> },
        { header: "Access", cell: (c) => (c.settings.read_only ? "read-only" : "read-write") },
        { header: "Credential", cell: (c) => (c.has_credential ? "stored" : <span className="field-error">missing</span>) },
        { header: "Used by", cell: (c) => (c.agents.length ? c.agents.join(", ") : <span className="hint">no agent</span>) },
        { header: "Version", cell: (c) => c.latest_version },
      ]}
      actions={(c) => (
        <>
          {can("connectors:test") && (
            <button type="button" className="button-secondary" disabled={testing === c.id} onClick={() => void test(c)}
              aria-label={`Test ${c.name}`}>
              {testing === c.id ? "Testing…" : "Test"}
            </button>
          )}
          {can("decisions:read") && (
            <button type="button" className="button-secondary" onClick={() => setWatching(c)} aria-label={`Decisions on ${c.name}`}>
              Decisions
            </button>
          )}
        </>
      )}
      remove={{
        allowed: () => can("connectors:delete"),
        path: (c) => `/api/v1/connectors/${c.id}`,
        title: (c) => `Delete connector ${c.name}?`,
        label: (c) => `Delete ${c.name}`,
        consequence: (c) => <p>Its credential is deleted too. Refused while a deployed agent names {c.name}.</p>,
      }}>
      <Drawer open={watching !== null} title={`Latest decisions on ${watching?.name ?? ""}`} onClose={() => setWatching(null)}>
        {watching && <RecentDecisions connector={watching} />}
      </Drawer>
      {can("connectors:create") && (
        <form className="card" onSubmit={create.submit} noValidate>
          <h2>Add a connector</h2>
          <ErrorMessage error={create.error} />
          <div className="form-row">
            <Field label="Name" value={form.name} error={error("name")} onChange={(e) => set({ name: e.target.value })}
              required hint="what agents name: lowercase, digits, _ -" autoComplete="off" />
            <Select label="Type" value={form.type} options={CONNECTOR_TYPES} onChange={(type) => set({ type })}
              labels={TYPE_LABELS} />
          </div>
          {isObjectStore(form.type) ? (
            <>
              <div className="form-row">
                {form.type === "s3" ? (
                  <>
                    <Field label="Access key ID" value={form.accessKeyId} error={error("settings.access_key_id")}
                      onChange={(e) => set({ accessKeyId: e.target.value })} required autoComplete="off" />
                    <Field label="Secret access key" type="password" value={form.password} error={error("password")}
                      onChange={(e) => set({ password: e.target.value })} autoComplete="new-password" hint="write-only" />
                    <Field label="Region" value={form.region} error={error("settings.region")}
                      onChange={(e) => set({ region: e.target.value })} autoComplete="off" />
                  </>
                ) : (
                  <>
                    <Field label="Account name" value={form.accountName} error={error("settings.account_name")}
                      onChange={(e) => set({ accountName: e.target.value })} required autoComplete="off" />
                    <Field label="Account key" type="password" value={form.password} error={error("password")}
                      onChange={(e) => set({ password: e.target.value })} autoComplete="new-password" hint="write-only" />
                  </>
                )}
              </div>
              <div className="form-row">
                <Field label={form.type === "s3" ? "Endpoint URL" : "Account URL"} value={form.endpointUrl}
                  error={error(form.type === "s3" ? "settings.endpoint_url" : "settings.account_url")}
                  onChange={(e) => set({ endpointUrl: e.target.value })} autoComplete="off"
                  hint={form.type === "s3" ? "empty: AWS; or an S3-compatible service" : "empty: https://<account>.blob.core.windows.net"} />
                <Field label={form.type === "s3" ? "Buckets" : "Containers"} value={form.buckets} error={error("settings.buckets")}
                  onChange={(e) => set({ buckets: e.target.value })} autoComplete="off" hint="comma-separated; empty: any" />
              </div>
              <div className="form-row">
                <Field label="Byte limit" value={form.maxBytes} error={error("settings.max_bytes")}
                  onChange={(e) => set({ maxBytes: e.target.value })} inputMode="numeric" hint="a get is cut here" />
                <Field label="Object limit" value={form.maxObjects} error={error("settings.max_objects")}
                  onChange={(e) => set({ maxObjects: e.target.value })} inputMode="numeric" hint="a listing is cut here" />
                <div className="field">
                  <label>
                    <input type="checkbox" checked={form.readOnly} onChange={(e) => set({ readOnly: e.target.checked })} /> Read-only
                  </label>
                </div>
              </div>
            </>
          ) : (
            <>
          <div className="form-row">
            <Field label="Host" value={form.host} error={error("settings.host")} onChange={(e) => set({ host: e.target.value })}
              required autoComplete="off" />
            <Field label="Port" value={form.port} error={error("settings.port")} onChange={(e) => set({ port: e.target.value })}
              placeholder={String(DEFAULT_PORTS[form.type])} inputMode="numeric" />
            <Field label="Database" value={form.database} error={error("settings.database")}
              onChange={(e) => set({ database: e.target.value })} required autoComplete="off" />
          </div>
          <div className="form-row">
            <Field label="Username" value={form.username} error={error("settings.username")}
              onChange={(e) => set({ username: e.target.value })} required autoComplete="off" />
            <Field label="Password" type="password" value={form.password} error={error("password")}
              onChange={(e) => set({ password: e.target.value })} autoComplete="new-password" hint="write-only" />
          </div>
          <div className="form-row">
            <Select label="TLS" value={form.tls} options={TLS_MODES} onChange={(tls) => set({ tls })} />
            <Field label="Row limit" value={form.maxRows} error={error("settings.max_rows")}
              onChange={(e) => set({ maxRows: e.target.value })} inputMode="numeric" />
            <div className="field">
              <label>
                <input type="checkbox" checked={form.readOnly} onChange={(e) => set({ readOnly: e.target.checked })} /> Read-only
              </label>
            </div>
          </div>
            </>
          )}
          <button type="submit" disabled={create.busy}>{create.busy ? "Creating…" : "Create connector"}</button>
        </form>
      )}
    </AdminTable>
  );
}
