// Types of the control-plane API. Generated ones come from schema.d.ts (`npm run gen:api`).
import type { components } from "./schema";

type Schemas = components["schemas"];
export type Me = Schemas["Me"];
export type TokenResponse = Schemas["TokenResponse"];
export type Member = Schemas["Member"];
export type Team = Schemas["Team"];
export type Workspace = Schemas["Workspace"];
export type ApiKey = Schemas["ApiKey"];
export type ApiKeyCreated = Schemas["ApiKeyCreated"];
export type AuditEvent = Schemas["AuditEventOut"];
export type AuditChainVerification = Schemas["AuditChainVerification"];
/** The decision log's hash chain (GET /api/v1/decisions/verify). */
export type DecisionChainVerification = Schemas["DecisionChainVerification"];

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

/** An organisation role, as the API types it. */
export type Role = Member["role"];
/** Every role, most privileged first (generated from the API: src/api/roles.ts). */
export { ROLES } from "./roles";
// The generated list and the generated type name the same roles, or the build fails.
type Listed = (typeof import("./roles").ROLES)[number];
const sameRoles: [Listed] extends [Role] ? ([Role] extends [Listed] ? true : never) : never = true;
void sameRoles;

/** One problem in a policy source, 1-based line/column (null when unknown). */
export interface PolicyProblem {
  document?: number | string | null;
  field?: string | null;
  line?: number | null;
  column?: number | null;
  message: string;
}

export type Policy = Schemas["Policy"];
export type PolicyApplied = Schemas["PolicyApplied"];
export type PolicyVersion = Schemas["PolicyVersion"];
export type BundleRevision = Schemas["BundleRevision"];

/** The validate report, with its details typed (the schema has them as plain objects). */
export interface ValidationReport {
  valid: boolean;
  details: PolicyProblem[];
}

export interface PolicyDiff {
  from: number;
  to: number;
  diff: string;
}

export interface Decision {
  decision_id?: string;
  outcome: "allow" | "deny" | "require_approval";
  reasons?: string[];
  matched_rules?: unknown[];
  bundle_revision?: number | string | null;
  key_id?: string | null;
  explanation?: unknown;
  [key: string]: unknown;
}

export interface TestFailure {
  test?: string;
  case?: string;
  expected?: unknown;
  actual?: unknown;
  message?: string;
}

export interface TestReport extends Omit<Schemas["TestReport"], "failures"> {
  failures: TestFailure[];
}

/** Publish and rollback answer the new bundle revision. */
export type Published = BundleRevision;

export type Gateway = Schemas["Gateway"];
export type GatewayCreated = Schemas["GatewayCreated"];
export type GatewayDetail = Schemas["GatewayWithDeployments"];
export type GatewayInstance = Schemas["Instance"];
/** A logged decision (GET /api/v1/decisions); `Decision` is the engine's answer. */
export type DecisionLog = Schemas["Decision"];
export type Connector = Schemas["Connector"];
export type ConnectionTest = Schemas["ConnectionTest"];
export type DecisionDetail = Schemas["DecisionDetail"];
export type Aggregates = Schemas["Aggregates"];
export type Execution = Schemas["Execution"];
/** One budget's counter in one period window (GET /api/v1/usage). */
export type BudgetUsageRow = Schemas["BudgetUsageOut"];

export type Deployment = Schemas["Deployment"];
export type DeploymentCreated = Schemas["DeploymentCreated"];

export type Workload = Schemas["Workload"];

export type WorkloadApplied = Schemas["WorkloadApplied"];

export type Approval = Schemas["Approval"];

export type MfaStatus = Schemas["MfaStatus"];
export type TotpEnrolment = Schemas["TotpEnrolment"];
export type TotpConfirmed = Schemas["TotpConfirmed"];
export type MfaPolicy = Schemas["MfaPolicyOut"];
export type SessionInfo = Schemas["SessionOut"];

export type SsoProvider = Schemas["Provider"];
export type SsoProviderCreate = Schemas["ProviderCreate"];
export type SsoProviderUpdate = Schemas["ProviderUpdate"];
export type SsoSettings = Schemas["SsoSettingsOut"];
export type OrgDomain = Schemas["DomainOut"];
export type SsoDiscovery = Schemas["Discovery"];
export type GroupMapping = Schemas["GroupMapping"];

export type Webhook = Schemas["Webhook"];
export type WebhookCreated = Schemas["WebhookCreated"];
export type WebhookDelivery = Schemas["Delivery"];

export type SecretInfo = Schemas["SecretInfo"];

export type Replay = Schemas["Replay"];
export type ReplayResult = Schemas["ReplayResult"];
export type ReplayTransition = Schemas["Transition"];
export type PolicySettings = Schemas["PolicySettings"];

// OAuth for MCP clients (M11): the consent step and the authorized clients.
export type ConsentRequest = Schemas["ConsentRequest"];
export type ConsentAnswer = Schemas["ConsentAnswer"];
export type OAuthGrant = Schemas["OAuthGrantOut"];
export type OAuthClient = Schemas["OAuthClientOut"];
export type OAuthClients = Schemas["OAuthClientsOut"];
export type OAuthSettings = Schemas["OAuthSettingsOut"];

/** The organisation's plan, limits and usage (GET /api/v1/plan). */
export type PlanOut = Schemas["PlanOut"];
export type PlanLimit = Schemas["PlanLimitOut"];
/** Billing with Stripe (GET /api/v1/billing): configured?, subscription, grace period. */
export type BillingOut = Schemas["BillingOut"];
export type Invoice = Schemas["InvoiceOut"];
export type InvoicesOut = Schemas["InvoicesOut"];
/** A Stripe page to send the browser to (checkout, customer portal). */
export type Redirect = Schemas["RedirectOut"];
