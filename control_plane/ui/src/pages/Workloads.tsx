// Agents and pipelines: the list, the designer (form + YAML; pipelines on a canvas), deploy.
import { useState } from "react";
import { useSearchParams } from "react-router";
import { api } from "../api/client";
import type { Deployment, DeploymentCreated, Gateway, Workload, WorkloadApplied } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { Snippets } from "../components/Snippets";
import { ConfirmDialog, Empty, ErrorMessage, Loading, formatTime } from "../components/ui";
import { WorkloadEditor } from "../components/WorkloadEditor";
import { AgentFormView, PipelineFormView } from "../components/WorkloadForms";
import { usePaged, useResource } from "../lib/useApi";
import { applyAgentForm, applyPipelineForm, newAgent } from "../lib/workloads";

type Kind = "agent" | "pipeline";
const COLLECTION = { agent: "agents", pipeline: "pipelines" } as const;

function blank(kind: Kind): Record<string, unknown> {
  return kind === "agent"
    ? applyAgentForm({}, newAgent)
    : applyPipelineForm({ spec: { limits: { max_steps: 20 } } }, "", "", "sequential", { agents: "" });
}

function Deploy({ workload, kind }: { workload: Workload; kind: Kind }) {
  const { can } = useAuth();
  const gateways = useResource<{ items: Gateway[] }>(can("gateways:read") ? "/api/v1/gateways?limit=500" : null);
  const deployments = useResource<{ items: Deployment[] }>(
    `/api/v1/deployments?kind=${kind}&name=${encodeURIComponent(workload.name)}`,
  );
  const [gatewayId, setGatewayId] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [done, setDone] = useState<(DeploymentCreated) | null>(null);
  const options = gateways.data?.items ?? [];
  const chosen = gatewayId || options[0]?.id || "";
  const deploy = async () => {
    setBusy(true);
    setError(null);
    try {
      setDone(await api.post<DeploymentCreated>("/api/v1/deployments", {
        gateway_id: chosen,
        kind,
        name: workload.name,
      }));
      deployments.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const current = done ?? deployments.data?.items[0];
  return (
    <section className="card" aria-labelledby="deploy-heading">
      <h2 id="deploy-heading">Deployments</h2>
      <ErrorMessage error={deployments.error ?? error} />
      {deployments.data && deployments.data.items.length === 0 && <p className="hint">Not deployed to any gateway.</p>}
      {deployments.data && deployments.data.items.length > 0 && (
        <ul>
          {deployments.data.items.map((d) => (
            <li key={d.id}>v{d.version} on <strong>{d.gateway_name}</strong> since {formatTime(d.updated_at)}</li>
          ))}
        </ul>
      )}
      {done && (
        <p className="alert alert-ok" role="status">
          Deployed v{done.version} to {done.gateway_name}
          {done.bundle_revision ? `; bundle revision ${done.bundle_revision} carries it` : "; it rides the first publish"}.
        </p>
      )}
      {can("deployments:create") && options.length > 0 && (
        <div className="inline-form">
          <label htmlFor="deploy-gateway">Gateway</label>
          <select id="deploy-gateway" value={chosen} onChange={(e) => setGatewayId(e.target.value)}>
            {options.map((g) => <option key={g.id} value={g.id}>{g.name} ({g.environment})</option>)}
          </select>
          <button type="button" onClick={deploy} disabled={busy || !chosen}>
            {busy ? "Deploying…" : `Deploy v${workload.latest_version}`}
          </button>
        </div>
      )}
      {can("deployments:create") && gateways.data && options.length === 0 && (
        <p className="hint">Register a gateway first (Gateways page).</p>
      )}
      {current && (
        <>
          <h3>Call it</h3>
          <Snippets endpoints={current.endpoints} name={workload.name} />
        </>
      )}
    </section>
  );
}

export function WorkloadsPage({ kind }: { kind: Kind }) {
  const { can } = useAuth();
  const collection = COLLECTION[kind];
  const title = kind === "agent" ? "Agents" : "Pipelines";
  const list = usePaged<Workload>(`/api/v1/${collection}`);
  const [search, setSearch] = useSearchParams();
  const selectedId = search.get("id");
  const creating = search.get("new") !== null;
  // What a save answered, until the reloaded list has it: the card stays on screen meanwhile.
  const [lastSaved, setLastSaved] = useState<Workload[]>([]);
  const selected = list.data?.find((w) => w.id === selectedId) ?? lastSaved.find((w) => w.id === selectedId) ?? null;
  // The editor that saved a new workload keeps its state (and its "Saved … v1" confirmation)
  // when the page switches to that workload; anything else the user opens gets a fresh one.
  const [savedFrom, setSavedFrom] = useState<{ id: string; key: string } | null>(null);
  const [blankForms, setBlankForms] = useState(0);
  const editorKey =
    selected && savedFrom?.id === selected.id ? savedFrom.key : (selected?.id ?? `new-${blankForms}`);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<Error | null>(null);
  const select = (id: string | null, isNew: boolean, replace: boolean) => {
    const next = new URLSearchParams();
    if (id) next.set("id", id);
    if (isNew) next.set("new", "");
    setSearch(next, { replace });
  };
  const pick = (id: string | null, isNew = false) => {
    setSavedFrom(null);
    setBlankForms((n) => n + 1);
    select(id, isNew, false);
  };
  const saved = (applied: WorkloadApplied) => {
    list.reload();
    const first = applied.items.find((w) => w.kind === kind);
    if (!first) return;
    setLastSaved(applied.items);
    setSavedFrom({ id: first.id, key: editorKey });
    // Replaces the "new" entry: going back does not reopen a blank form for what was saved.
    select(first.id, false, true);
  };

  return (
    <section>
      <div className="page-header">
        <h1>{title}</h1>
        {can(`${collection}:create`) && (
          <button type="button" onClick={() => pick(null, true)}>New {kind}</button>
        )}
      </div>
      <p className="hint">
        {kind === "agent"
          ? "An agent is a model, a prompt and the tools it may call; policies decide who may invoke it."
          : "A pipeline runs agents in one of nine patterns; each agent call is authorized on its own."}
      </p>
      <ErrorMessage error={list.error ?? deleteError} />
      <div className="split">
        <nav aria-label={title}>
          {list.loading && !list.data && <Loading what={`Loading ${collection}`} />}
          {list.data && list.data.length === 0 && <Empty>No {collection} yet.</Empty>}
          {list.data && list.data.length > 0 && (
            <ul className="list-select">
              {list.data.map((w) => (
                <li key={w.id}>
                  <button type="button" aria-current={w.id === selectedId ? "true" : undefined} onClick={() => pick(w.id)}>
                    {w.name} <span className="badge">v{w.latest_version}</span>
                    {w.description && <div className="hint">{w.description}</div>}
                  </button>
                </li>
              ))}
            </ul>
          )}
          {list.more && <button type="button" className="button-secondary" onClick={list.loadMore}>Load more</button>}
        </nav>
        <div>
          {!selected && !creating && (
            <Empty>Choose {kind === "agent" ? "an agent" : "a pipeline"}{can(`${collection}:create`) ? ` or create a new one` : ""}.</Empty>
          )}
          {(selected || creating) && (
            <div className="card">
              <h2>{selected ? `${selected.name} v${selected.latest_version}` : `New ${kind}`}</h2>
              <WorkloadEditor key={editorKey} collection={collection}
                initial={selected ? selected.config : blank(kind)} canSave={can(`${collection}:create`)} onSaved={saved}
                renderForm={(doc, change, fieldError) =>
                  kind === "agent"
                    ? <AgentFormView doc={doc} change={change} fieldError={fieldError} />
                    : <PipelineFormView doc={doc} change={change} fieldError={fieldError} />
                } />
              {selected && can(`${collection}:delete`) && (
                <div className="toolbar">
                  <button type="button" className="button-secondary" onClick={() => setDeleting(true)}>Delete…</button>
                </div>
              )}
            </div>
          )}
          {selected && <Deploy key={selected.id} workload={selected} kind={kind} />}
        </div>
      </div>
      <ConfirmDialog open={deleting} title={`Delete ${selected?.name}?`} confirmLabel="Delete" danger
        onCancel={() => setDeleting(false)}
        onConfirm={async () => {
          if (!selected) return;
          setDeleteError(null);
          try {
            await api.delete(`/api/v1/${collection}/${selected.id}`);
            pick(null);
            list.reload();
          } catch (e) {
            setDeleteError(e as Error);
          } finally {
            setDeleting(false);
          }
        }}>
        <p>Every version goes; gateways stop serving it with the next bundle.</p>
      </ConfirmDialog>
    </section>
  );
}

export const AgentsPage = () => <WorkloadsPage kind="agent" />;
export const PipelinesPage = () => <WorkloadsPage kind="pipeline" />;
