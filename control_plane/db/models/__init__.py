"""ORM classes, one module per domain. Every tenant-owned row carries `organization_id` via
`TenantScoped`; the few global ones are listed in `GLOBAL_MODELS` with a reason
(`tests/unit/test_tenancy_models.py` enforces it). Import from here:
`from control_plane.db.models import User` (this package re-exports every class, and importing
it registers every table on the metadata, which Alembic relies on)."""

from __future__ import annotations

from control_plane.db.base import Base
from control_plane.db.models.billing import BillingAccount, StripeEvent
from control_plane.db.models.connectors import Connector, ConnectorVersion
from control_plane.db.models.decisions import (
    BudgetUsage,
    DecisionChain,
    DecisionLog,
    Execution,
)
from control_plane.db.models.fleet import (
    Deployment,
    Gateway,
    GatewayInstance,
    Workload,
    WorkloadVersion,
)
from control_plane.db.models.identity import (
    ApiKey,
    AuditEvent,
    Membership,
    MfaPolicy,
    Organization,
    RecoveryCode,
    RevokedSession,
    SigningKey,
    Team,
    TeamMember,
    TotpCredential,
    User,
    UserSession,
    Workspace,
)
from control_plane.db.models.notifications import (
    ApprovalRequest,
    NotificationCounter,
    Webhook,
    WebhookDelivery,
)
from control_plane.db.models.oauth import OAuthClient, OAuthGrant, OAuthSettings
from control_plane.db.models.plans import OrganizationPlan, PlanWarning
from control_plane.db.models.platform import PlatformGateway, PlatformPlacement
from control_plane.db.models.policies import (
    BundleRevision,
    Policy,
    PolicySettings,
    PolicyVersion,
    ReplayJob,
)
from control_plane.db.models.secrets import (
    Secret,
)
from control_plane.db.models.sso import (
    OrganizationDomain,
    SsoDomain,
    SsoLink,
    SsoProvider,
    SsoSettings,
)

GLOBAL_MODELS: dict[type[Base], str] = {
    Organization: "the tenant itself; reached only by the id in the caller's credential",
    User: "a person may belong to several organisations; reached through Membership",
    SigningKey: "key material read by the key ring for every tenant (platform keys, and each "
    "organisation's bundle keys by organization_id); public halves are published",
    TotpCredential: "a person's second factor, like their password, is the User's",
    RecoveryCode: "belongs to the User's second factor, not to one organisation",
    PlatformGateway: "the operator's shared gateway serves many organisations (ADR 0012); "
    "each organisation it serves is a tenant-scoped PlatformPlacement",
    StripeEvent: "Stripe event ids are global: a webhook is verified and deduplicated before "
    "any organisation is known (organization_id is set once it is)",
}

__all__ = [
    "GLOBAL_MODELS",
    "ApiKey",
    "ApprovalRequest",
    "AuditEvent",
    "BillingAccount",
    "BudgetUsage",
    "BundleRevision",
    "Connector",
    "ConnectorVersion",
    "DecisionChain",
    "DecisionLog",
    "Deployment",
    "Execution",
    "Gateway",
    "GatewayInstance",
    "Membership",
    "MfaPolicy",
    "NotificationCounter",
    "OAuthClient",
    "OAuthGrant",
    "OAuthSettings",
    "Organization",
    "OrganizationDomain",
    "OrganizationPlan",
    "PlanWarning",
    "PlatformGateway",
    "PlatformPlacement",
    "Policy",
    "PolicySettings",
    "PolicyVersion",
    "RecoveryCode",
    "ReplayJob",
    "RevokedSession",
    "Secret",
    "SigningKey",
    "SsoDomain",
    "SsoLink",
    "SsoProvider",
    "SsoSettings",
    "StripeEvent",
    "Team",
    "TeamMember",
    "TotpCredential",
    "User",
    "UserSession",
    "Webhook",
    "WebhookDelivery",
    "Workload",
    "WorkloadVersion",
    "Workspace",
]
