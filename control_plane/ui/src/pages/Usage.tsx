// Usage and budgets: each budget's current window as a bar, and its earlier windows.
import { useEffect, useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { qs } from "../api/client";
import type { BudgetUsageRow } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { UsageBar } from "../components/UsageBar";
import { Empty, ErrorMessage, Loading, formatTime } from "../components/ui";
import { ago } from "../lib/fleet";
import { STATE_TEXT, byBudget, formatAmount, metricUnit, usageState, windowLabel, type BudgetUsage } from "../lib/usage";
import { useAllPages } from "../lib/useApi";

/** Sidecars report every 10 s; refreshing as often keeps the bars as fresh as they can be. */
const REFRESH_MS = 10_000;

/** The usage rows (all pages), refreshed every 10 s, and a clock for "reported N s ago". */
export function useUsage(budget: string | null) {
  const usage = useAllPages<BudgetUsageRow>(`/api/v1/usage${qs({ budget, limit: 500 })}`);
  const [now, setNow] = useState(() => Date.now());
  const { reload } = usage;
  useEffect(() => {
    const timer = setInterval(() => {
      setNow(Date.now());
      reload();
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [reload]);
  useEffect(() => setNow(Date.now()), [usage.data]);
  return { ...usage, now };
}

function History({ usage }: { usage: BudgetUsage }) {
  if (usage.history.length === 0) return <p className="hint">No earlier windows yet.</p>;
  return (
    <details>
      <summary>Earlier windows ({usage.history.length})</summary>
      <div className="table-wrap">
        <table>
          <caption className="sr-only">Earlier windows of {usage.budget}</caption>
          <thead>
            <tr>
              <th scope="col">Window</th>
              <th scope="col">Used</th>
              <th scope="col">Limit</th>
              <th scope="col">State</th>
              <th scope="col">Last report</th>
            </tr>
          </thead>
          <tbody>
            {usage.history.map((row) => {
              const state = usageState(row);
              return (
                <tr key={row.id}>
                  <td>{windowLabel(row.window)}</td>
                  <td>{formatAmount(row.metric, row.used)}</td>
                  <td>
                    {formatAmount(row.metric, row.limit)}
                    {row.soft_limit !== null && <span className="hint"> (soft {formatAmount(row.metric, row.soft_limit)})</span>}
                  </td>
                  <td><span className={`usage-state-text usage-${state}`}>{STATE_TEXT[state]}</span></td>
                  <td>{formatTime(row.reported_at)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </details>
  );
}

function BudgetCard({ usage, now }: { usage: BudgetUsage; now: number }) {
  const { current } = usage;
  const headingId = `budget-${current.id}`;
  return (
    <article className="card usage-card" aria-labelledby={headingId}>
      <div className="page-header">
        <h2 id={headingId}>{usage.budget}</h2>
        <span className="hint" title={formatTime(current.reported_at)}>reported {ago(current.reported_at, now)}</span>
      </div>
      <p className="usage-meta">
        <span className="badge">{current.scope}</span>
        <span className="badge">{metricUnit(current.metric)}</span>
        <span className="badge">per {current.period}</span>
        <span className="hint"> Current window: <strong>{windowLabel(current.window)}</strong></span>
      </p>
      <UsageBar row={current} />
      <History usage={usage} />
    </article>
  );
}

export function UsagePage() {
  const { can } = useAuth();
  const [search, setSearch] = useSearchParams();
  const budget = search.get("budget") || null;
  const usage = useUsage(budget);
  const budgets = useMemo(() => (usage.data ? byBudget(usage.data) : []), [usage.data]);
  // Names seen without a filter, so the choice stays offered once one budget is shown.
  const [known, setKnown] = useState<string[]>([]);
  useEffect(() => {
    if (!budget && usage.data) setKnown([...new Set(usage.data.map((r) => r.budget))].sort());
  }, [budget, usage.data]);
  const options = budget && !known.includes(budget) ? [budget, ...known] : known;
  const choose = (name: string) => setSearch(name ? { budget: name } : {});

  return (
    <section>
      <div className="page-header">
        <h1>Usage and budgets</h1>
        <div className="toolbar">
          <label htmlFor="usage-budget">Budget</label>
          <select id="usage-budget" value={budget ?? ""} onChange={(e) => choose(e.target.value)}>
            <option value="">all budgets</option>
            {options.map((name) => <option key={name} value={name}>{name}</option>)}
          </select>
          <button type="button" className="button-secondary" onClick={usage.reload} disabled={usage.loading}>
            {usage.loading && usage.data ? "Refreshing…" : "Refresh"}
          </button>
        </div>
      </div>
      <p className="hint">
        How much of each budget its current period window has used, as the gateways' sidecars report it
        (every 10 seconds; limits are enforced by the sidecars as calls happen).
      </p>
      <ErrorMessage error={usage.error} />
      {usage.loading && !usage.data && <Loading what="Loading usage" />}
      {usage.truncated && (
        <p className="alert alert-error" role="status">
          There are more windows than this page loads at once; the newest may be missing. Choose a budget to see all of its windows.
        </p>
      )}
      {usage.data && budgets.length === 0 && (
        budget ? (
          <Empty>
            No usage has been reported for the budget “{budget}”.{" "}
            <button type="button" className="link-button" onClick={() => choose("")}>Show all budgets</button>
          </Empty>
        ) : (
          <Empty>
            <p>No budget usage has been reported yet.</p>
            <p>
              Budgets come from <strong>BudgetPolicy</strong> documents
              {can("policies:read") ? <> on the <Link to="/policies">Policies page</Link></> : null}: a limit (and
              optionally a soft limit) of dollars, executions or tokens per hour, day, week or month for a scope such
              as <code>team:research</code>. Once one is published, usage appears here as soon as a gateway's sidecar
              reports (every 10 seconds).
            </p>
          </Empty>
        )
      )}
      {budgets.map((b) => <BudgetCard key={b.budget} usage={b} now={usage.now} />)}
    </section>
  );
}
