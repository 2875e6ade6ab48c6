import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { qs } from "../api/client";
import type { Execution } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { Empty, ErrorMessage, Field, Loading, StatusBadge, formatCost, formatTime } from "../components/ui";
import { usePaged } from "../lib/useApi";

interface Filters {
  name: string;
  status: string;
  principal: string;
}

const none: Filters = { name: "", status: "", principal: "" };

export function ExecutionsPage() {
  const { can } = useAuth();
  const [form, setForm] = useState<Filters>(none);
  const [applied, setApplied] = useState<Filters>(none);
  const executions = usePaged<Execution>(`/api/v1/executions${qs({ ...applied, limit: 50 })}`);
  const filtered = Object.values(applied).some(Boolean);
  const apply = (event: FormEvent) => {
    event.preventDefault();
    setApplied({ name: form.name.trim(), status: form.status, principal: form.principal.trim() });
  };
  return (
    <section>
      <h1>Executions</h1>
      <p className="hint">Agent and pipeline runs reported by the gateways: who ran what, the outcome and its cost.</p>
      <form className="card filters" onSubmit={apply} aria-label="Filter executions">
        <Field label="Agent or pipeline" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} />
        <div className="field">
          <label htmlFor="execution-status">Status</label>
          <select id="execution-status" value={form.status} onChange={(e) => setForm({ ...form, status: e.target.value })}>
            <option value="">any</option>
            <option value="succeeded">succeeded</option>
            <option value="failed">failed</option>
          </select>
        </div>
        <Field label="Principal" value={form.principal} placeholder="user:alice@example.com"
          onChange={(e) => setForm({ ...form, principal: e.target.value })} />
        <div className="actions">
          <button type="submit">Apply filters</button>
          {filtered && (
            <button type="button" className="button-secondary" onClick={() => {
              setForm(none);
              setApplied(none);
            }}>
              Clear
            </button>
          )}
        </div>
      </form>
      <ErrorMessage error={executions.error} />
      {executions.loading && !executions.data && <Loading what="Loading executions" />}
      {executions.data && executions.data.length === 0 && (
        <Empty>{filtered ? "No execution matches these filters." : "No executions yet. Call a deployed agent through a gateway."}</Empty>
      )}
      {executions.data && executions.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Workload</th>
                <th scope="col">Status</th>
                <th scope="col">Principal</th>
                <th scope="col">Channel</th>
                <th scope="col">Tokens in / out</th>
                <th scope="col">Cost</th>
                <th scope="col">Latency</th>
                <th scope="col">Decision</th>
              </tr>
            </thead>
            <tbody>
              {executions.data.map((x) => (
                <tr key={x.id}>
                  <td>{formatTime(x.time)}</td>
                  <td>{x.kind} <strong>{x.name}</strong></td>
                  <td>
                    <StatusBadge status={x.status} />
                    {x.error && <div className="text-error">{x.error}</div>}
                  </td>
                  <td>{x.principal ?? "—"}</td>
                  <td>{x.channel ?? "—"}</td>
                  <td>{x.tokens_in} / {x.tokens_out}</td>
                  <td>{formatCost(x.cost_usd)}</td>
                  <td>{Math.round(x.latency_ms)} ms</td>
                  <td>
                    {x.decision_id && can("decisions:read") ? (
                      <Link to={`/decisions?decision=${encodeURIComponent(x.decision_id)}`}>{x.decision_id.slice(0, 8)}…</Link>
                    ) : (
                      x.decision_id?.slice(0, 8) ?? "—"
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {executions.more && (
            <button type="button" className="button-secondary" onClick={executions.loadMore} disabled={executions.loading}>
              Load more
            </button>
          )}
        </div>
      )}
    </section>
  );
}
