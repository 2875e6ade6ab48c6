import { useEffect, useMemo, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { qs } from "../api/client";
import type { DecisionDetail, DecisionLog, Gateway } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { Drawer, Empty, ErrorMessage, Field, JsonBlock, Loading, formatTime } from "../components/ui";
import {
  CHANNELS,
  OUTCOMES,
  activeFilterCount,
  apiParams,
  checkFilters,
  emptyFilters,
  filtersFromSearch,
  filtersToSearch,
  reasonsOf,
  type DecisionFilters,
} from "../lib/decisions";
import { usePaged, useResource } from "../lib/useApi";
import { DecisionExport, DecisionVerification } from "./DecisionTools";

function Outcome({ outcome }: { outcome: string }) {
  return <span className={`outcome outcome-${outcome.replace(/[^a-z_]/g, "")}`}>{outcome.replace("_", " ")}</span>;
}

function ChoiceField({
  label,
  value,
  options,
  onChange,
}: {
  label: string;
  value: string;
  options: readonly string[];
  onChange(value: string): void;
}) {
  const id = `filter-${label.toLowerCase().replace(/\W+/g, "-")}`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">any</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o.replace("_", " ")}
          </option>
        ))}
      </select>
    </div>
  );
}

function useGatewayNames(): Map<string, string> {
  const { can } = useAuth();
  const gateways = useResource<{ items: Gateway[] }>(can("gateways:read") ? "/api/v1/gateways?limit=500" : null);
  return useMemo(() => new Map((gateways.data?.items ?? []).map((g) => [g.id, g.name])), [gateways.data]);
}

function DecisionDetail({ id, gateways }: { id: string; gateways: Map<string, string> }) {
  const decision = useResource<DecisionDetail>(`/api/v1/decisions/${encodeURIComponent(id)}`);
  if (decision.loading && !decision.data) return <Loading what="Loading the decision" />;
  if (decision.error) return <ErrorMessage error={decision.error} />;
  const d = decision.data;
  if (!d) return null;
  const reasons = reasonsOf(d.result);
  return (
    <div data-testid="decision-detail">
      <p>
        Outcome: <Outcome outcome={d.outcome} />
      </p>
      <dl className="facts">
        <dt>Decision id</dt>
        <dd><code>{d.decision_id}</code></dd>
        <dt>Time</dt>
        <dd>{formatTime(d.time)}</dd>
        <dt>Principal</dt>
        <dd>{d.principal ?? "—"}</dd>
        <dt>Action</dt>
        <dd>{d.action ?? "—"}</dd>
        <dt>Resource</dt>
        <dd>{d.resource ?? "—"}</dd>
        <dt>Channel</dt>
        <dd>{d.channel ?? "—"}</dd>
        <dt>Policy revision</dt>
        <dd>
          {d.bundle_revision ? (
            <Link to="/bundles">bundle revision {d.bundle_revision}</Link>
          ) : (
            "none (no bundle loaded)"
          )}
        </dd>
        {d.bundle && (
          <>
            <dt>Policies in it</dt>
            <dd>
              {Object.entries(d.bundle.policies).map(([name, version]) => `${name} v${version}`).join(", ") || "none"}
              <div className="hint">{d.bundle.reason}; key <code>{d.bundle.key_id}</code></div>
            </dd>
          </>
        )}
        <dt>Chain</dt>
        <dd>#{d.sequence} <code>{d.chain_hash.slice(0, 16)}</code></dd>
        <dt>Gateway</dt>
        <dd>
          {d.gateway_id ? gateways.get(d.gateway_id) ?? d.gateway_id : "—"}
          {d.instance ? ` (${d.instance})` : ""}
        </dd>
        <dt>Duration</dt>
        <dd>{d.duration_us !== null ? `${d.duration_us} µs` : "—"}</dd>
      </dl>
      <h3>Reasons</h3>
      {reasons.length ? (
        <ul>
          {reasons.map((r, i) => (
            <li key={i}>{r}</li>
          ))}
        </ul>
      ) : (
        <p className="hint">No reasons given.</p>
      )}
      <h3>Input</h3>
      <JsonBlock value={d.input} label="Decision input" />
      <h3>Output</h3>
      <JsonBlock value={d.result} label="Decision output" />
    </div>
  );
}

export function DecisionsPage() {
  const [search, setSearch] = useSearchParams();
  const applied = useMemo(() => filtersFromSearch(search), [search]);
  const [form, setForm] = useState<DecisionFilters>(applied);
  const appliedKey = filtersToSearch(applied).toString();
  // Back/forward through filter changes shows those filters in the form too.
  useEffect(() => setForm(filtersFromSearch(new URLSearchParams(appliedKey))), [appliedKey]);
  const [problems, setProblems] = useState<Record<string, string>>({});
  const params = apiParams(applied);
  const decisions = usePaged<DecisionLog>(`/api/v1/decisions${qs({ ...params, limit: 50 })}`);
  const gateways = useGatewayNames();
  const open = search.get("decision");

  const set = (patch: Partial<DecisionFilters>) => setForm((f) => ({ ...f, ...patch }));
  const apply = (event: FormEvent) => {
    event.preventDefault();
    const found = checkFilters(form);
    setProblems(Object.fromEntries(found.map((p) => [p.field, p.message])));
    if (found.length === 0) setSearch(filtersToSearch(form));
  };
  const openDecision = (id: string | null) => {
    const next = new URLSearchParams(search);
    if (id) next.set("decision", id);
    else next.delete("decision");
    setSearch(next);
  };
  const count = activeFilterCount(applied);

  return (
    <section>
      <div className="page-header">
        <h1>Decisions</h1>
        <DecisionExport params={params} />
      </div>
      <p className="hint">Every authorization decision the sidecars made, as they logged it, newest first.</p>
      <DecisionVerification />
      <form className="card filters" onSubmit={apply} aria-label="Filter decisions" noValidate>
        <ChoiceField label="Outcome" value={form.outcome} options={OUTCOMES} onChange={(outcome) => set({ outcome })} />
        <Field label="Principal" value={form.principal} placeholder="user:alice@example.com"
          onChange={(e) => set({ principal: e.target.value })} />
        <Field label="Action" value={form.action} placeholder="invoke" onChange={(e) => set({ action: e.target.value })} />
        <Field label="Resource" value={form.resource} placeholder="agent:* (globs)"
          onChange={(e) => set({ resource: e.target.value })} />
        <Field label="Reason contains" value={form.reason} onChange={(e) => set({ reason: e.target.value })} />
        <ChoiceField label="Channel" value={form.channel} options={CHANNELS} onChange={(channel) => set({ channel })} />
        <Field label="From" type="datetime-local" value={form.since} error={problems.since}
          onChange={(e) => set({ since: e.target.value })} />
        <Field label="Until" type="datetime-local" value={form.until} error={problems.until}
          onChange={(e) => set({ until: e.target.value })} />
        <div className="actions">
          <button type="submit">Apply filters</button>
          {count > 0 && (
            <button type="button" className="button-secondary" onClick={() => {
              setForm(emptyFilters);
              setProblems({});
              setSearch(new URLSearchParams());
            }}>
              Clear ({count})
            </button>
          )}
        </div>
      </form>
      <ErrorMessage error={decisions.error} />
      {decisions.loading && !decisions.data && <Loading what="Loading decisions" />}
      {decisions.data && decisions.data.length === 0 && (
        <Empty>
          {count > 0
            ? "No decision matches these filters."
            : "No decisions yet. They appear once a gateway's sidecar ships its decision log."}
        </Empty>
      )}
      {decisions.data && decisions.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <caption>{decisions.data.length}{decisions.more ? "+" : ""} decisions</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Outcome</th>
                <th scope="col">Principal</th>
                <th scope="col">Action</th>
                <th scope="col">Resource</th>
                <th scope="col">Channel</th>
                <th scope="col">Revision</th>
                <th scope="col"><span className="sr-only">Details</span></th>
              </tr>
            </thead>
            <tbody>
              {decisions.data.map((d) => (
                <tr key={d.decision_id}>
                  <td>{formatTime(d.time)}</td>
                  <td><Outcome outcome={d.outcome} /></td>
                  <td>{d.principal ?? "—"}</td>
                  <td>{d.action ?? "—"}</td>
                  <td>{d.resource ?? "—"}</td>
                  <td>{d.channel ?? "—"}</td>
                  <td>{d.bundle_revision ?? "—"}</td>
                  <td>
                    <button type="button" className="row-button" onClick={() => openDecision(d.decision_id)}
                      aria-label={`Details of decision ${d.decision_id}`}>
                      Details
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {decisions.more && (
            <button type="button" className="button-secondary" onClick={decisions.loadMore} disabled={decisions.loading}>
              Load more
            </button>
          )}
        </div>
      )}
      <Drawer open={open !== null} title="Decision" onClose={() => openDecision(null)}>
        {open && <DecisionDetail id={open} gateways={gateways} />}
      </Drawer>
    </section>
  );
}
