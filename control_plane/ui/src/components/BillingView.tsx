// The billing page's content: banners when a limit is near or reached, the plan and its
// limits as bars, the subscription and a downgrade's grace period, the upgrade / manage
// buttons (only with Stripe configured and for `billing:manage`), and the invoices.
import type { BillingOut, Invoice, PlanOut } from "../api/types";
import { banners, changedLimits, formatMoney, limitViews, offers, planTitle, type LimitView } from "../lib/billing";
import { formatTime } from "./ui";

const STATE_CLASS = { unlimited: "usage-ok", ok: "usage-ok", near: "usage-soft", reached: "usage-hard" } as const;
const STATE_TEXT = { unlimited: "unlimited", ok: "within the plan", near: "nearly at the limit", reached: "limit reached" } as const;

function LimitBar({ view }: { view: LimitView }) {
  return (
    <li className={`usage ${STATE_CLASS[view.state]}`} data-testid={`limit-${view.name}`}>
      <strong>{view.label}</strong>
      {view.limit !== null && (
        <div
          className="usage-bar"
          role="meter"
          aria-label={`${view.label} used of the plan`}
          aria-valuemin={0}
          aria-valuemax={view.limit}
          aria-valuenow={Math.min(view.used, view.limit)}
          aria-valuetext={`${view.figures}, ${STATE_TEXT[view.state]}`}
        >
          <div className="usage-fill" style={{ width: `${view.percent}%` }} />
        </div>
      )}
      <p className="usage-figures">
        {view.figures} · <span className="usage-state">{STATE_TEXT[view.state]}</span>
      </p>
    </li>
  );
}

function InvoiceTable({ invoices }: { invoices: Invoice[] }) {
  if (invoices.length === 0) return <p className="hint">No invoices yet.</p>;
  return (
    <div className="table-wrap">
      <table>
        <caption className="sr-only">Invoices</caption>
        <thead>
          <tr>
            <th scope="col">Invoice</th>
            <th scope="col">Date</th>
            <th scope="col">Amount</th>
            <th scope="col">Status</th>
            <th scope="col"><span className="sr-only">Links</span></th>
          </tr>
        </thead>
        <tbody>
          {invoices.map((invoice) => (
            <tr key={invoice.id}>
              <td>{invoice.number ?? invoice.id}</td>
              <td>{formatTime(invoice.created)}</td>
              <td>{formatMoney(invoice.status === "paid" ? invoice.amount_paid : invoice.amount_due, invoice.currency)}</td>
              <td><span className={`badge badge-${invoice.status ?? "unknown"}`}>{invoice.status ?? "unknown"}</span></td>
              <td>
                {invoice.hosted_invoice_url && (
                  <a href={invoice.hosted_invoice_url} target="_blank" rel="noopener noreferrer">View</a>
                )}
                {invoice.invoice_pdf && (
                  <>
                    {" · "}
                    <a href={invoice.invoice_pdf} target="_blank" rel="noopener noreferrer">PDF</a>
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export interface BillingViewProps {
  plan: PlanOut;
  billing: BillingOut;
  /** null: not loaded (or not allowed). */
  invoices: Invoice[] | null;
  canManage: boolean;
  busy: boolean;
  /** Back from Stripe Checkout (`?checkout=success|cancelled`). */
  returned?: string | null;
  onUpgrade(plan: string): void;
  onManage(): void;
}

export function BillingView({ plan, billing, invoices, canManage, busy, returned, onUpgrade, onManage }: BillingViewProps) {
  const notices = banners(plan);
  const offered = offers(billing);
  const subscription = billing.subscription;
  return (
    <>
      {notices.map((banner) => (
        <div
          key={banner.limit}
          className={`alert ${banner.level === "reached" ? "alert-error" : "alert-warn"}`}
          role={banner.level === "reached" ? "alert" : "status"}
          data-testid={`banner-${banner.limit}`}
        >
          {banner.message}
          {offered.upgrades.length > 0 && canManage && " Upgrading raises the limit at once."}
        </div>
      ))}
      {returned === "success" && (
        <p className="alert alert-ok" role="status">
          Thank you: the payment went through. The plan changes as soon as Stripe confirms it (usually within seconds); reload to see it.
        </p>
      )}
      {returned === "cancelled" && <p className="alert alert-warn" role="status">The checkout was cancelled; nothing changed.</p>}

      <article className="card" aria-labelledby="plan-heading">
        <h2 id="plan-heading">
          {plan.title} plan
        </h2>
        {subscription ? (
          <p>
            Subscription <span className={`badge badge-${subscription.status}`}>{subscription.status}</span>
            {subscription.current_period_end && <> · current period ends {formatTime(subscription.current_period_end)}</>}
          </p>
        ) : (
          <p className="hint">
            {billing.configured
              ? "No subscription: upgrade below."
              : "Plans are set by your operator (kaizen-studio org set-plan); billing with Stripe is not configured here."}
          </p>
        )}
        {billing.grace && (
          <div className="alert alert-warn" role="status" data-testid="grace">
            Grace period after the downgrade to {planTitle(billing.plan)}: until {formatTime(billing.grace.until)} the previous
            limits hold; then {changedLimits(billing.grace.limits, billing.grace.plan_limits)}. Nothing is deleted, but past
            that date adding more than the plan allows is refused and agent calls past its monthly executions are denied.
          </div>
        )}
        <ul className="usage-list" aria-label="Plan limits">
          {limitViews(plan).map((view) => <LimitBar key={view.name} view={view} />)}
        </ul>
        {canManage && (offered.upgrades.length > 0 || offered.manage) && (
          <div className="toolbar">
            {offered.upgrades.map((name) => (
              <button key={name} type="button" disabled={busy} onClick={() => onUpgrade(name)}>
                Upgrade to {planTitle(name)}
              </button>
            ))}
            {offered.manage && (
              <button type="button" className="button-secondary" disabled={busy} onClick={onManage}>
                Manage subscription
              </button>
            )}
          </div>
        )}
      </article>

      {invoices !== null && (
        <article className="card" aria-labelledby="invoices-heading">
          <h2 id="invoices-heading">Invoices</h2>
          <InvoiceTable invoices={invoices} />
        </article>
      )}
    </>
  );
}
