// One budget window as a bar of used/limit with the soft limit marked, coloured by state.
import { STATE_TEXT, barPercent, consumption, formatAmount, usageState, type UsageRow } from "../lib/usage";

export function UsageBar({ row, compact }: { row: UsageRow; compact?: boolean }) {
  const state = usageState(row);
  const used = formatAmount(row.metric, row.used);
  const limit = formatAmount(row.metric, row.limit);
  const ratio = consumption(row);
  const percent = Number.isFinite(ratio) ? `${Math.round(ratio * 100)}%` : "no allowance";
  const soft = row.soft_limit !== null ? formatAmount(row.metric, row.soft_limit) : null;
  const summary = `${used} of ${limit} (${percent}), ${STATE_TEXT[state]}`;
  return (
    <div className={`usage usage-${state}${compact ? " usage-compact" : ""}`}>
      <div
        className="usage-bar"
        role="meter"
        aria-label={`${row.budget} consumption`}
        aria-valuemin={0}
        aria-valuemax={row.limit}
        aria-valuenow={Math.max(0, Math.min(row.used, row.limit))}
        aria-valuetext={summary}
      >
        <div className="usage-fill" style={{ width: `${barPercent(row.used, row.limit)}%` }} />
        {row.soft_limit !== null && (
          <div
            className="usage-soft-mark"
            style={{ left: `${barPercent(row.soft_limit, row.limit)}%` }}
            title={`Soft limit ${soft}`}
          />
        )}
      </div>
      <p className="usage-figures">
        <strong data-testid="usage-used">{used}</strong> of {limit} ({percent}) ·{" "}
        <span className="usage-state" data-testid="usage-state">{STATE_TEXT[state]}</span>
        {soft && !compact && <span className="hint"> · soft limit {soft}</span>}
      </p>
    </div>
  );
}
