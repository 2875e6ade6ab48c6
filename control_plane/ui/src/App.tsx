import { Navigate, Route, Routes, useLocation } from "react-router";
import { useAuth } from "./auth/AuthContext";
import { Shell } from "./components/Shell";
import { Loading } from "./components/ui";
import { homePath } from "./lib/nav";
import { LoginPage, SignupPage, SsoCallbackPage } from "./pages/Auth";
import { ssoCodeFromHash } from "./lib/login";
import { AccountPage } from "./pages/Account";
import { PoliciesPage } from "./pages/Policies";
import { BundlesPage } from "./pages/Bundles";
import { MembersPage } from "./pages/admin/Members";
import { TeamsPage } from "./pages/admin/Teams";
import { ApiKeysPage } from "./pages/admin/ApiKeys";
import { WorkspacesPage } from "./pages/admin/Workspaces";
import { AuditPage } from "./pages/admin/Audit";
import { SsoPage } from "./pages/admin/Sso";
import { WebhooksPage } from "./pages/admin/Webhooks";
import { SecretsPage } from "./pages/admin/Secrets";
import { DecisionsPage } from "./pages/Decisions";
import { GatewaysPage } from "./pages/Gateways";
import { ConnectorsPage } from "./pages/Connectors";
import { ExecutionsPage } from "./pages/Executions";
import { ApprovalsPage } from "./pages/Approvals";
import { DashboardPage } from "./pages/Dashboard";
import { UsagePage } from "./pages/Usage";
import { BillingPage } from "./pages/Billing";
import { OAuthConsentPage } from "./pages/OAuthConsent";
import { McpClientsPage } from "./pages/McpClients";
import { isConsentPath, rememberConsent } from "./lib/oauth";
import { lazy, Suspense, type ReactNode } from "react";

// The editor pages carry CodeMirror; load them only when opened.
const PolicyEditorPage = lazy(() => import("./pages/PolicyEditor").then((m) => ({ default: m.PolicyEditorPage })));
const PolicyDetailPage = lazy(() => import("./pages/PolicyDetail").then((m) => ({ default: m.PolicyDetailPage })));
// Agents and pipelines carry CodeMirror and React Flow.
const AgentsPage = lazy(() => import("./pages/Workloads").then((m) => ({ default: m.AgentsPage })));
const PipelinesPage = lazy(() => import("./pages/Workloads").then((m) => ({ default: m.PipelinesPage })));
const SimulatePage = lazy(() => import("./pages/Simulate").then((m) => ({ default: m.SimulatePage })));

function Guard({ permission, children }: { permission: string; children: ReactNode }) {
  const { can } = useAuth();
  if (can(permission)) return <Suspense fallback={<Loading />}>{children}</Suspense>;
  return (
    <section>
      <h1>Not available</h1>
      <p>Your role does not allow this page ({permission}). Ask an organisation admin.</p>
    </section>
  );
}

export function App() {
  const { me, checking } = useAuth();
  const location = useLocation();
  if (checking) return <Loading what="Checking your session" />;
  // The SSO login flows end on `/#/sso?code=…` (a fragment never reaches a server log).
  const ssoCode = ssoCodeFromHash(location.hash);
  if (ssoCode) return <SsoCallbackPage code={ssoCode} />;
  if (!me) {
    // An MCP client's consent survives the sign-in: password and MFA come back through
    // `from`, an SSO login (which leaves the page) through sessionStorage.
    rememberConsent(location.pathname + location.search);
    return (
      <Routes>
        <Route path="/signup" element={<SignupPage />} />
        <Route path="/login" element={<LoginPage />} />
        <Route path="*" element={<Navigate to="/login" replace state={{ from: location.pathname + location.search }} />} />
      </Routes>
    );
  }
  // Signed in on /login: back to an MCP client's consent if the sign-in interrupted one
  // (anything else lands on the home page, as before).
  const from = (location.state as { from?: string } | null)?.from;
  const afterLogin = from && isConsentPath(from) ? from : null;
  const g = (permission: string, page: ReactNode) => <Guard permission={permission}>{page}</Guard>;
  return (
    <Shell>
      <Routes>
        <Route path="/" element={<Navigate to={homePath(me.permissions)} replace />} />
        <Route path="/login" element={<Navigate to={afterLogin ?? homePath(me.permissions)} replace />} />
        <Route path="/signup" element={<Navigate to={homePath(me.permissions)} replace />} />
        <Route path="/account" element={<AccountPage />} />
        <Route path="/oauth-consent" element={<OAuthConsentPage />} />
        <Route path="/mcp-clients" element={<McpClientsPage />} />
        <Route path="/policies" element={g("policies:read", <PoliciesPage />)} />
        <Route path="/policies/new" element={g("policies:create", <PolicyEditorPage />)} />
        <Route path="/policies/:id" element={g("policies:read", <PolicyDetailPage />)} />
        <Route path="/simulate" element={g("policies:simulate", <SimulatePage />)} />
        <Route path="/bundles" element={g("bundles:read", <BundlesPage />)} />
        <Route path="/dashboard" element={g("organization:read", <DashboardPage />)} />
        <Route path="/usage" element={g("budgets:read", <UsagePage />)} />
        <Route path="/billing" element={g("billing:read", <BillingPage />)} />
        <Route path="/approvals" element={g("approvals:read", <ApprovalsPage />)} />
        <Route path="/decisions" element={g("decisions:read", <DecisionsPage />)} />
        <Route path="/agents" element={g("agents:read", <AgentsPage />)} />
        <Route path="/pipelines" element={g("pipelines:read", <PipelinesPage />)} />
        <Route path="/gateways" element={g("gateways:read", <GatewaysPage />)} />
        <Route path="/executions" element={g("executions:read", <ExecutionsPage />)} />
        <Route path="/admin/members" element={g("users:read", <MembersPage />)} />
        <Route path="/admin/teams" element={g("teams:read", <TeamsPage />)} />
        <Route path="/admin/api-keys" element={g("api_keys:read", <ApiKeysPage />)} />
        <Route path="/admin/workspaces" element={g("workspaces:read", <WorkspacesPage />)} />
        <Route path="/admin/audit" element={g("audit_events:read", <AuditPage />)} />
        <Route path="/admin/sso" element={g("sso:read", <SsoPage />)} />
        <Route path="/admin/webhooks" element={g("webhooks:read", <WebhooksPage />)} />
        <Route path="/connectors" element={g("connectors:read", <ConnectorsPage />)} />
        <Route path="/admin/secrets" element={g("secrets:read", <SecretsPage />)} />
        <Route
          path="*"
          element={
            <section>
              <h1>Page not found</h1>
              <p>Use the navigation to find what you need.</p>
            </section>
          }
        />
      </Routes>
    </Shell>
  );
}
