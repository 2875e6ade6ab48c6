import { useMemo, useState } from "react";
import { Link } from "react-router";
import { qs } from "../api/client";
import type { Aggregates, Approval, Gateway, GatewayDetail, Page } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { Empty, ErrorMessage, Loading, formatTime } from "../components/ui";
import { OUTCOME_ORDER, WINDOWS, stackedBars, sumCounts, totalsByKey, windowParams, type WindowKey } from "../lib/dashboard";
import { HEALTH_TEXT, gatewayHealth } from "../lib/fleet";
import { useResource } from "../lib/useApi";
import { topConsumers, windowLabel } from "../lib/usage";
import { UsageBar } from "../components/UsageBar";
import { useUsage } from "./Usage";

const SWATCH: Record<string, string> = { allow: "#4caf6a", deny: "#d9534f", require_approval: "#e0a526", other: "#9aa4af" };

function DecisionsChart({ data }: { data: Aggregates }) {
  const bars = stackedBars(data.buckets);
  const totals = sumCounts(data.buckets);
  const label = (start: string) =>
    data.interval === "hour"
      ? new Date(start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : new Date(start).toLocaleDateString();
  return (
    <>
      <div className="stats">
        {OUTCOME_ORDER.map((o) => (
          <div className="stat" key={o}>
            <span className="hint">{o.replace("_", " ")}</span>
            <strong data-testid={`total-${o}`}>{totals[o] ?? 0}</strong>
          </div>
        ))}
      </div>
      <div className="legend" aria-hidden="true">
        {[...OUTCOME_ORDER, "other"].map((o) => (
          <span key={o} style={{ ["--swatch" as string]: SWATCH[o] }}>{o.replace("_", " ")}</span>
        ))}
      </div>
      <div className="chart" role="img" aria-label={`Decisions per ${data.interval} by outcome`}>
        {bars.map((bar) => (
          <div className="bar" key={bar.start} title={`${label(bar.start)}: ${bar.total}`}>
            {bar.segments.map((s) => (
              <div key={s.outcome} className={`seg-${s.outcome}`} style={{ height: `${s.percent}%` }} />
            ))}
          </div>
        ))}
      </div>
      <details>
        <summary>Show as a table</summary>
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{data.interval === "hour" ? "Hour" : "Day"}</th>
                {OUTCOME_ORDER.map((o) => <th scope="col" key={o}>{o.replace("_", " ")}</th>)}
                <th scope="col">Total</th>
              </tr>
            </thead>
            <tbody>
              {data.buckets.filter((b) => b.total > 0).map((b) => (
                <tr key={b.start}>
                  <td>{label(b.start)}</td>
                  {OUTCOME_ORDER.map((o) => <td key={o}>{b.counts[o] ?? 0}</td>)}
                  <td>{b.total}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </>
  );
}

function TopDenied({ by, since }: { by: "principal" | "resource"; since: string }) {
  const top = useResource<Aggregates>(`/api/v1/decisions/aggregates${qs({ by, outcome: "deny", since, interval: "day", top: 5 })}`);
  const ranked = top.data ? totalsByKey(top.data.keys, top.data.buckets).filter((r) => r.count > 0) : [];
  const title = by === "principal" ? "Most denied principals" : "Most denied resources";
  return (
    <section className="card" aria-labelledby={`top-${by}`}>
      <h2 id={`top-${by}`}>{title}</h2>
      <ErrorMessage error={top.error} />
      {top.loading && !top.data && <Loading />}
      {top.data && ranked.length === 0 && <p className="hint">No denials in this window.</p>}
      {ranked.length > 0 && (
        <ol data-testid={`top-${by}`}>
          {ranked.map((r) => (
            <li key={r.key}>
              <Link to={`/decisions${qs({ outcome: "deny", [by]: r.key })}`}>{r.key}</Link> — {r.count}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function GatewayRow({ gateway }: { gateway: Gateway }) {
  const detail = useResource<GatewayDetail>(`/api/v1/gateways/${gateway.id}`);
  const health = detail.data ? gatewayHealth(detail.data.instances, detail.data.current_revision) : null;
  return (
    <li>
      <Link to="/gateways">{gateway.name}</Link> <span className="badge">{gateway.environment}</span>{" "}
      {health ? <span className={`health health-${health}`}>{HEALTH_TEXT[health]}</span> : detail.error ? "status unavailable" : "…"}
    </li>
  );
}

function FleetHealth() {
  const gateways = useResource<Page<Gateway>>("/api/v1/gateways?limit=20");
  return (
    <section className="card" aria-labelledby="fleet-heading">
      <h2 id="fleet-heading">Gateway health</h2>
      <ErrorMessage error={gateways.error} />
      {gateways.loading && !gateways.data && <Loading />}
      {gateways.data && gateways.data.items.length === 0 && <p className="hint">No gateways registered.</p>}
      {gateways.data && gateways.data.items.length > 0 && (
        <ul>{gateways.data.items.map((g) => <GatewayRow key={g.id} gateway={g} />)}</ul>
      )}
    </section>
  );
}

function PendingApprovals() {
  const pending = useResource<Page<Approval>>("/api/v1/approvals?status=pending&limit=5");
  const items = pending.data?.items ?? [];
  return (
    <section className="card" aria-labelledby="pending-heading">
      <h2 id="pending-heading">Pending approvals</h2>
      <ErrorMessage error={pending.error} />
      {pending.loading && !pending.data && <Loading />}
      {pending.data && items.length === 0 && <p className="hint">Nothing waits for approval.</p>}
      {items.length > 0 && (
        <>
          <ul>
            {items.map((a) => (
              <li key={a.id}>{a.principal} — {a.action} {a.resource} <span className="hint">({formatTime(a.created_at)})</span></li>
            ))}
          </ul>
          <Link to="/approvals">{pending.data?.next_cursor ? "See all pending requests" : "Decide in the inbox"}</Link>
        </>
      )}
    </section>
  );
}

function BudgetConsumption() {
  const usage = useUsage(null);
  const top = usage.data ? topConsumers(usage.data, 5) : [];
  return (
    <section className="card" aria-labelledby="budgets-heading">
      <h2 id="budgets-heading">Budget consumption</h2>
      <ErrorMessage error={usage.error} />
      {usage.loading && !usage.data && <Loading />}
      {usage.data && top.length === 0 && <p className="hint">No budget usage reported yet.</p>}
      {top.length > 0 && (
        <ul className="usage-list" data-testid="budget-consumption">
          {top.map((b) => (
            <li key={b.budget}>
              <strong>{b.budget}</strong> <span className="hint">{windowLabel(b.current.window)}</span>
              <UsageBar row={b.current} compact />
            </li>
          ))}
        </ul>
      )}
      <Link to="/usage">{top.length > 0 ? "See usage of every budget" : "Open usage and budgets"}</Link>
    </section>
  );
}

export function DashboardPage() {
  const { can, me } = useAuth();
  const [window, setWindow] = useState<WindowKey>("24h");
  // Fixed per window choice, so re-renders do not refetch with a moving clock.
  const params = useMemo(() => windowParams(window), [window]);
  const canDecisions = can("decisions:read");
  const outcomes = useResource<Aggregates>(
    canDecisions ? `/api/v1/decisions/aggregates${qs({ by: "outcome", ...params })}` : null,
  );
  return (
    <section>
      <div className="page-header">
        <h1>Dashboard</h1>
        {canDecisions && (
          <div className="inline-form">
            <label htmlFor="dashboard-window">Window</label>
            <select id="dashboard-window" value={window} onChange={(e) => setWindow(e.target.value as WindowKey)}>
              {(Object.keys(WINDOWS) as WindowKey[]).map((w) => <option key={w} value={w}>{WINDOWS[w].label}</option>)}
            </select>
          </div>
        )}
      </div>
      <p className="hint">{me?.organization_name}: what was allowed, denied and held, and whether the fleet keeps up.</p>
      {canDecisions && (
        <section className="card" aria-labelledby="decisions-heading">
          <h2 id="decisions-heading">Decisions by outcome</h2>
          <ErrorMessage error={outcomes.error} />
          {outcomes.loading && !outcomes.data && <Loading what="Counting decisions" />}
          {outcomes.data && outcomes.data.buckets.every((b) => b.total === 0) && (
            <Empty>No decisions in this window.</Empty>
          )}
          {outcomes.data && outcomes.data.buckets.some((b) => b.total > 0) && <DecisionsChart data={outcomes.data} />}
        </section>
      )}
      <div className="grid-2">
        {canDecisions && <TopDenied by="principal" since={params.since} />}
        {canDecisions && <TopDenied by="resource" since={params.since} />}
        {can("gateways:read") && <FleetHealth />}
        {can("approvals:read") && <PendingApprovals />}
        {can("budgets:read") && <BudgetConsumption />}
      </div>
      {!canDecisions && !can("gateways:read") && !can("approvals:read") && !can("budgets:read") && (
        <Empty>Your role has no figures here; use the navigation.</Empty>
      )}
    </section>
  );
}
