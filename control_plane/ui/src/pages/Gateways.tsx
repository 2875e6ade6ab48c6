import { useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { Gateway, GatewayCreated, GatewayDetail } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ConfirmDialog, CopyButton, Empty, ErrorMessage, Field, Loading, Select, formatTime } from "../components/ui";
import { HEALTH_TEXT, INSTANCE_TEXT, ago, gatewayHealth, instanceState, revisionLag } from "../lib/fleet";
import { usePaged, useResource } from "../lib/useApi";
import { GatewayDeployments } from "./GatewayDeployments";

const ENVIRONMENTS = ["dev", "stage", "prod"] as const;

function CredentialOnce({ created, onDone }: { created: GatewayCreated; onDone(): void }) {
  return (
    <div className="alert alert-ok secret" role="status">
      <h2>Credential for “{created.name}”</h2>
      <p>
        Set it as <code>KAIZEN_GATEWAY_TOKEN</code> for the gateway and its sidecar. It is shown only this once.
      </p>
      <div className="secret-row">
        <label className="sr-only" htmlFor="gateway-credential">Gateway credential</label>
        <input id="gateway-credential" readOnly value={created.credential} onFocus={(e) => e.target.select()}
          data-testid="gateway-credential" />
        <CopyButton text={created.credential} />
      </div>
      <button type="button" className="button-secondary" onClick={onDone}>I have stored it</button>
    </div>
  );
}

function GatewayCard({
  gateway,
  onCredential,
  onDeleted,
}: {
  gateway: Gateway;
  onCredential(created: GatewayCreated): void;
  onDeleted(): void;
}) {
  const { can } = useAuth();
  const detail = useResource<GatewayDetail>(`/api/v1/gateways/${gateway.id}`);
  const [confirm, setConfirm] = useState<"rotate" | "delete" | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const d = detail.data;
  const current = d?.current_revision ?? null;
  const health = d ? gatewayHealth(d.instances, current) : null;
  const headingId = `gateway-${gateway.id}`;

  const act = async () => {
    setBusy(true);
    setError(null);
    try {
      if (confirm === "rotate") onCredential(await api.post<GatewayCreated>(`/api/v1/gateways/${gateway.id}/credential`));
      if (confirm === "delete") {
        await api.delete(`/api/v1/gateways/${gateway.id}`);
        onDeleted();
      }
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
      setConfirm(null);
    }
  };

  return (
    <article className="card gateway-card" aria-labelledby={headingId}>
      <div className="page-header">
        <h2 id={headingId}>
          {gateway.name} <span className={`badge badge-env-${gateway.environment}`}>{gateway.environment}</span>
        </h2>
        {health && (
          <span className={`health health-${health}`} data-testid="gateway-health">
            {HEALTH_TEXT[health]}
          </span>
        )}
      </div>
      <dl className="facts">
        <dt>URL</dt>
        <dd><code>{gateway.url}</code></dd>
        <dt>Mode</dt>
        <dd>{gateway.mode}</dd>
        <dt>Credential</dt>
        <dd><code>{gateway.credential_prefix}…</code></dd>
        <dt>Last seen</dt>
        <dd title={formatTime(gateway.last_seen_at)}>{ago(gateway.last_seen_at)}</dd>
        <dt>Current revision</dt>
        <dd>{current ?? "nothing published"}</dd>
      </dl>
      <ErrorMessage error={detail.error ?? error} />
      {detail.loading && !d && <Loading what="Loading sidecar status" />}
      {d && d.instances.length === 0 && (
        <p className="hint">No sidecar has reported yet. Start one with this gateway's credential.</p>
      )}
      {d && d.instances.length > 0 && (
        <div className="table-wrap">
          <table>
            <caption>Sidecar instances</caption>
            <thead>
              <tr>
                <th scope="col">Instance</th>
                <th scope="col">Bundle revision</th>
                <th scope="col">State</th>
                <th scope="col">Last sync</th>
                <th scope="col">Reported</th>
                <th scope="col">Decisions</th>
                <th scope="col">Log backlog</th>
              </tr>
            </thead>
            <tbody>
              {d.instances.map((i) => {
                const state = instanceState(i, current);
                return (
                  <tr key={i.instance}>
                    <td><code>{i.instance}</code></td>
                    <td>
                      {i.bundle_revision ?? "—"} <span className="hint">({revisionLag(i.bundle_revision, current)})</span>
                    </td>
                    <td><span className={`health health-${state}`}>{INSTANCE_TEXT[state]}</span></td>
                    <td title={formatTime(i.last_sync)}>{ago(i.last_sync)}</td>
                    <td title={formatTime(i.reported_at)}>{ago(i.reported_at)}</td>
                    <td>
                      {Object.entries(i.decisions).map(([k, v]) => `${k.replace("_", " ")} ${v}`).join(", ") || "—"}
                    </td>
                    <td>{i.log_backlog}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <GatewayDeployments gateway={gateway} deployments={d?.deployments} />
      <div className="toolbar">
        <button type="button" className="button-secondary" onClick={detail.reload} disabled={detail.loading}>
          Refresh status
        </button>
        {can("gateways:update") && (
          <button type="button" className="button-secondary" onClick={() => setConfirm("rotate")}>
            Rotate credential…
          </button>
        )}
        {can("gateways:delete") && (
          <button type="button" className="button-secondary" onClick={() => setConfirm("delete")}>
            Delete…
          </button>
        )}
      </div>
      <ConfirmDialog open={confirm !== null} busy={busy} danger
        title={confirm === "rotate" ? `Rotate the credential of ${gateway.name}?` : `Delete ${gateway.name}?`}
        confirmLabel={confirm === "rotate" ? "Rotate" : "Delete"} onConfirm={act} onCancel={() => setConfirm(null)}>
        <p>
          {confirm === "rotate"
            ? "The old credential stops working at once; the gateway and its sidecar need the new one."
            : "Its credential stops working at once and its status is forgotten. Logged decisions stay."}
        </p>
      </ConfirmDialog>
    </article>
  );
}

function RegisterGateway({ onCreated }: { onCreated(created: GatewayCreated): void }) {
  const [name, setName] = useState("");
  const [environment, setEnvironment] = useState<string>("dev");
  const [url, setUrl] = useState("http://127.0.0.1:10000");
  const [mode, setMode] = useState("shared");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await api.post<GatewayCreated>("/api/v1/gateways", { name, environment, url, mode }));
      setName("");
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="card" onSubmit={submit} noValidate>
      <h2>Register a gateway</h2>
      <ErrorMessage error={error} />
      <div className="form-row">
        <Field label="Gateway name" value={name} error={fields.name} onChange={(e) => setName(e.target.value)} required />
        <Select label="Environment" value={environment} options={ENVIRONMENTS} error={fields.environment}
          onChange={setEnvironment} />
        <Field label="Gateway URL" value={url} error={fields.url} onChange={(e) => setUrl(e.target.value)}
          hint="Where callers reach it (Envoy in front of the gateway)" />
        <Select label="Mode" value={mode} options={["shared", "dedicated"]} error={fields.mode} onChange={setMode} />
      </div>
      <button type="submit" disabled={busy}>{busy ? "Registering…" : "Register gateway"}</button>
    </form>
  );
}

export function GatewaysPage() {
  const { can } = useAuth();
  const gateways = usePaged<Gateway>("/api/v1/gateways");
  const [environment, setEnvironment] = useState("all");
  const [created, setCreated] = useState<GatewayCreated | null>(null);
  const shown = (gateways.data ?? []).filter((g) => environment === "all" || g.environment === environment);
  const showCredential = (value: GatewayCreated) => {
    setCreated(value);
    gateways.reload();
  };
  return (
    <section>
      <h1>Gateways</h1>
      <p className="hint">
        The fleet: each gateway's sidecars, the bundle revision they enforce and whether they keep up.
      </p>
      {created && <CredentialOnce created={created} onDone={() => setCreated(null)} />}
      <div className="inline-form">
        <label htmlFor="gateway-environment">Show environment</label>
        <select id="gateway-environment" value={environment} onChange={(e) => setEnvironment(e.target.value)}>
          {["all", ...ENVIRONMENTS].map((e) => <option key={e} value={e}>{e}</option>)}
        </select>
      </div>
      <ErrorMessage error={gateways.error} />
      {gateways.loading && !gateways.data && <Loading what="Loading gateways" />}
      {gateways.data && shown.length === 0 && (
        <Empty>
          {gateways.data.length === 0
            ? can("gateways:create")
              ? "No gateways yet. Register one below, then start it with its credential."
              : "No gateways yet."
            : `No gateways in ${environment}.`}
        </Empty>
      )}
      {shown.map((g) => (
        <GatewayCard key={g.id} gateway={g} onCredential={showCredential} onDeleted={gateways.reload} />
      ))}
      {gateways.more && <button type="button" className="button-secondary" onClick={gateways.loadMore}>Load more</button>}
      {can("gateways:create") && <RegisterGateway onCreated={showCredential} />}
    </section>
  );
}
