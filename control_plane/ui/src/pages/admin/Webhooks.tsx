import { useState } from "react";
import { api } from "../../api/client";
import type { Webhook, WebhookCreated, WebhookDelivery } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { AdminTable } from "../../components/AdminTable";
import {
  ConfirmDialog,
  CopyButton,
  Drawer,
  Empty,
  ErrorMessage,
  Field,
  JsonBlock,
  Loading,
  StatusBadge,
  formatTime,
} from "../../components/ui";
import { usePaged } from "../../lib/useApi";
import { useSubmit } from "../../lib/useSubmit";
import { WEBHOOK_EVENTS, deliveryOutcome, toggle } from "../../lib/webhooks";

function SecretOnce({ created, rotated, onDismiss }: { created: WebhookCreated; rotated: boolean; onDismiss(): void }) {
  return (
    <div className="alert alert-ok secret" role="status">
      <h2>{rotated ? "New signing secret" : "Webhook created"} for {created.url}</h2>
      <p>
        Copy the signing secret now: it is shown only this once. Verify each delivery's{" "}
        <code>webhook-signature</code> with it (Standard Webhooks: any <code>standardwebhooks</code> library).
      </p>
      <div className="secret-row">
        <label className="sr-only" htmlFor="webhook-secret">Signing secret</label>
        <input id="webhook-secret" readOnly value={created.secret} data-testid="webhook-secret" onFocus={(e) => e.target.select()} />
        <CopyButton text={created.secret} />
      </div>
      <button type="button" className="button-secondary" onClick={onDismiss}>I have stored it</button>
    </div>
  );
}

function Deliveries({ webhook }: { webhook: Webhook }) {
  const [status, setStatus] = useState("");
  const deliveries = usePaged<WebhookDelivery>(
    `/api/v1/webhooks/${webhook.id}/deliveries${status ? `?status=${status}` : ""}`,
  );
  return (
    <div>
      <div className="inline-form">
        <label htmlFor="delivery-status">Status</label>
        <select id="delivery-status" value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">all</option>
          <option value="pending">pending</option>
          <option value="delivered">delivered</option>
          <option value="failed">failed</option>
        </select>
        <button type="button" className="button-secondary" onClick={deliveries.reload}>Refresh</button>
      </div>
      <ErrorMessage error={deliveries.error} />
      {deliveries.loading && !deliveries.data && <Loading what="Loading deliveries" />}
      {deliveries.data && deliveries.data.length === 0 && <Empty>No deliveries{status ? ` ${status}` : ""} yet.</Empty>}
      {deliveries.data && deliveries.data.length > 0 && (
        <ul className="delivery-list">
          {deliveries.data.map((d) => (
            <li key={d.id} className="card">
              <p>
                <strong>{d.event}</strong> <StatusBadge status={d.status} /> — {deliveryOutcome(d)}
              </p>
              <p className="hint">
                Created {formatTime(d.created_at)}
                {d.delivered_at ? ` · delivered ${formatTime(d.delivered_at)}` : d.status === "pending" ? ` · next attempt ${formatTime(d.next_attempt_at)}` : ""}
              </p>
              <details>
                <summary>Payload</summary>
                <JsonBlock value={d.payload} label={`Payload of ${d.event}`} />
              </details>
            </li>
          ))}
        </ul>
      )}
      {deliveries.more && <button type="button" className="button-secondary" onClick={deliveries.loadMore}>Load more</button>}
    </div>
  );
}

function EventChoices({ value, onChange, error, legend }: { value: string[]; onChange(v: string[]): void; error?: string; legend: string }) {
  return (
    <fieldset className="checkbox-group" aria-invalid={error ? true : undefined}>
      <legend>{legend}</legend>
      {WEBHOOK_EVENTS.map(([event, meaning]) => (
        <div className="field checkbox" key={event}>
          <input id={`${legend}-${event}`} type="checkbox" checked={value.includes(event)}
            onChange={(e) => onChange(toggle(value, event, e.target.checked))} />
          <label htmlFor={`${legend}-${event}`}><code>{event}</code> — {meaning}</label>
        </div>
      ))}
      {error && <small className="field-error" role="alert">{error}</small>}
    </fieldset>
  );
}

export function WebhooksPage() {
  const { can } = useAuth();
  const hooks = usePaged<Webhook>("/api/v1/webhooks");
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<string[]>(["approval.requested"]);
  const [description, setDescription] = useState("");
  const [secret, setSecret] = useState("");
  // The signing secret lives only in this state: shown once, gone on dismiss or navigation.
  const [created, setCreated] = useState<{ hook: WebhookCreated; rotated: boolean } | null>(null);
  const [rowError, setRowError] = useState<Error | null>(null);
  const [rotating, setRotating] = useState<Webhook | null>(null);
  const [viewing, setViewing] = useState<Webhook | null>(null);
  const create = useSubmit(async () => {
    const body: Record<string, unknown> = { url: url.trim(), events, description };
    if (secret) body.secret = secret;
    setCreated({ hook: await api.post<WebhookCreated>("/api/v1/webhooks", body), rotated: false });
    setUrl("");
    setDescription("");
    setSecret("");
    hooks.reload();
  });

  const act = async (action: () => Promise<void>) => {
    setRowError(null);
    try {
      await action();
      hooks.reload();
    } catch (e) {
      setRowError(e as Error);
    }
  };

  const intro = (
    <>
      <p className="hint">Kaizen Studio POSTs these events to your URLs, signed with each webhook's secret.</p>
      {created && <SecretOnce created={created.hook} rotated={created.rotated} onDismiss={() => setCreated(null)} />}
    </>
  );

  return (
    <AdminTable title="Webhooks" plural="webhooks" rows={hooks} rowKey={(w) => w.id} before={intro} error={rowError}
      columns={[
        {
          header: "URL",
          cell: (w) => (
            <>
              <code>{w.url}</code>
              {w.description && <div className="hint">{w.description}</div>}
            </>
          ),
        },
        { header: "Events", cell: (w) => w.events.join(", ") },
        { header: "Secret", cell: (w) => (w.secret_prefix ? <code>{w.secret_prefix}…</code> : <span className="hint">yours</span>) },
        {
          header: "Enabled",
          cell: (w) =>
            can("webhooks:update") ? (
              <input type="checkbox" checked={w.enabled} aria-label={`Enabled: ${w.url}`}
                onChange={(e) => act(() => api.patch(`/api/v1/webhooks/${w.id}`, { enabled: e.target.checked }))} />
            ) : w.enabled ? "yes" : "no",
        },
        { header: "Created", cell: (w) => formatTime(w.created_at) },
      ]}
      actions={(w) => (
        <>
          <button type="button" className="button-secondary" onClick={() => setViewing(w)}>Deliveries</button>
          {can("webhooks:update") && (
            <button type="button" className="button-secondary" onClick={() => setRotating(w)}>Rotate secret…</button>
          )}
        </>
      )}
      remove={{
        allowed: () => can("webhooks:delete"),
        path: (w) => `/api/v1/webhooks/${w.id}`,
        title: (w) => `Delete the webhook to ${w.url}?`,
        consequence: () => <p>No more events are sent to it; its delivery log goes with it.</p>,
      }}>
      {can("webhooks:create") && (
        <form className="card" onSubmit={create.submit} noValidate>
          <h2>Add a webhook</h2>
          <ErrorMessage error={create.error} />
          <div className="form-row">
            <Field label="URL" type="url" value={url} error={create.fields.url} onChange={(e) => setUrl(e.target.value)} required
              placeholder="https://hooks.example.com/kaizen" />
            <Field label="Description (optional)" value={description} error={create.fields.description}
              onChange={(e) => setDescription(e.target.value)} />
            <Field label="Signing secret (optional)" type="password" value={secret} error={create.fields.secret} autoComplete="off"
              hint="At least 16 characters; leave empty to have one generated" onChange={(e) => setSecret(e.target.value)} />
          </div>
          <EventChoices legend="Events" value={events} onChange={setEvents} error={create.fields.events} />
          <button type="submit" disabled={create.busy}>{create.busy ? "Adding…" : "Add webhook"}</button>
        </form>
      )}
      <Drawer open={viewing !== null} title={`Deliveries to ${viewing?.url ?? ""}`} onClose={() => setViewing(null)}>
        {viewing && <Deliveries webhook={viewing} />}
      </Drawer>
      <ConfirmDialog open={rotating !== null} title="Rotate the signing secret?" confirmLabel="Rotate"
        onConfirm={() => {
          const hook = rotating;
          setRotating(null);
          if (hook) void act(async () => setCreated({ hook: await api.post<WebhookCreated>(`/api/v1/webhooks/${hook.id}/secret`, {}), rotated: true }));
        }}
        onCancel={() => setRotating(null)}>
        <p>Deliveries are signed with the new secret from now on; update your receiver with it.</p>
      </ConfirmDialog>
    </AdminTable>
  );
}
