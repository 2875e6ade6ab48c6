// An in-app message on every page when a plan limit is near (≥ 90 %) or reached; the billing
// page shows them all, with the bars.
import { useEffect } from "react";
import { Link, useLocation } from "react-router";
import type { PlanOut } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { banners } from "../lib/billing";
import { useResource } from "../lib/useApi";

export function PlanBanner() {
  const { can } = useAuth();
  const { pathname } = useLocation();
  const readable = can("organization:read");
  const plan = useResource<PlanOut>(readable ? "/api/v1/plan" : null);
  const { reload } = plan;
  // Fresh on each page change: a create elsewhere may have reached a limit.
  useEffect(() => {
    if (readable) reload();
  }, [pathname, readable, reload]);
  if (!plan.data || pathname === "/billing") return null;
  const [first, ...rest] = banners(plan.data);
  if (!first) return null;
  return (
    <div
      className={`alert ${first.level === "reached" ? "alert-error" : "alert-warn"} plan-banner`}
      role={first.level === "reached" ? "alert" : "status"}
      data-testid="plan-banner"
    >
      {first.message}
      {rest.length > 0 && ` (and ${rest.length} more limit${rest.length === 1 ? "" : "s"})`}{" "}
      {can("billing:read") ? <Link to="/billing">Plan and billing</Link> : "Ask an owner or admin about the plan."}
    </div>
  );
}
