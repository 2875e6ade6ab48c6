// Plan and billing (`billing:read`: owners and admins): the plan's limits and usage,
// banners when one is near or reached, Stripe Checkout / the customer portal, invoices.
import { useCallback } from "react";
import { useSearchParams } from "react-router";
import { api } from "../api/client";
import type { BillingOut, InvoicesOut, PlanOut, Redirect } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { BillingView } from "../components/BillingView";
import { ErrorMessage, Loading } from "../components/ui";
import { useAction, useResource } from "../lib/useApi";

export function BillingPage() {
  const { can } = useAuth();
  const [search] = useSearchParams();
  const plan = useResource<PlanOut>("/api/v1/plan");
  const billing = useResource<BillingOut>("/api/v1/billing");
  const invoices = useResource<InvoicesOut>(billing.data?.configured ? "/api/v1/billing/invoices" : null);
  // Stripe's pages take over the browser; the control plane made the URL, never the page.
  const go = useCallback(async (path: string, body: unknown) => {
    const redirect = await api.post<Redirect>(path, body);
    window.location.assign(redirect.url);
  }, []);
  const action = useAction(go);

  return (
    <section>
      <div className="page-header">
        <h1>Plan and billing</h1>
      </div>
      <ErrorMessage error={plan.error ?? billing.error} />
      <ErrorMessage error={action.error} />
      {(plan.loading || billing.loading) && !(plan.data && billing.data) && <Loading what="Loading the plan" />}
      {plan.data && billing.data && (
        <BillingView
          plan={plan.data}
          billing={billing.data}
          invoices={billing.data.configured ? (invoices.data?.items ?? null) : null}
          canManage={can("billing:manage")}
          busy={action.busy}
          returned={search.get("checkout")}
          onUpgrade={(name) => void action.run("/api/v1/billing/checkout", { plan: name })}
          onManage={() => void action.run("/api/v1/billing/portal", {})}
        />
      )}
      {billing.data?.configured && <ErrorMessage error={invoices.error} />}
    </section>
  );
}
