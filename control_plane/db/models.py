"""ORM classes. Every tenant-owned row carries `organization_id` via `TenantScoped`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class Organization(Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))


class User(Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)


class SigningKey(Base):
    """The control plane's asymmetric keys: the platform's (access tokens, approval grants;
    `organization_id` NULL) and each organisation's own bundle-signing keys."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), unique=True)
    # Set: this organisation's bundle key (a sidecar of that scope trusts only these).
    # No foreign key on purpose: the key ring is global key material, and a cascade from
    # `organizations` (e.g. TRUNCATE … CASCADE) must never take the platform keys with it.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # Organisation keys: a JWS by the key this one replaced (or, for the organisation's
    # first key, by the platform key that signed its bundles before), binding the new
    # public key to the scope, so a runtime that trusts the old key can trust the new one.
    endorsement: Mapped[str | None] = mapped_column(Text)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    # AES-GCM ciphertext of the PKCS#8 private key under the master key.
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # Stops signing at `retired_at`; stays in the JWKS until `expires_at`.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Membership(TenantScoped, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(32))


class Team(TenantScoped, Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")


class TeamMember(TenantScoped, Base):
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    team_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class Workspace(TenantScoped, Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    environment: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(1000), default="")


class ApiKey(TenantScoped, Base):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(TenantScoped, Base):
    """One admin action; `hash` chains it to the organisation's previous event."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("organization_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Policy(TenantScoped, Base):
    """A policy document by name; its text lives in versions. The draft is the latest
    version (absent once `deleted_at` is set); `published_version` is what the current
    bundle revision holds."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    latest_version: Mapped[int] = mapped_column(Integer)
    published_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PolicyVersion(TenantScoped, Base):
    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "version"),)

    policy_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("policies.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(320))


class BundleRevision(TenantScoped, Base):
    """One signed bundle of the organisation; the highest revision is the current one."""

    __tablename__ = "bundle_revisions"
    __table_args__ = (UniqueConstraint("organization_id", "revision"),)

    revision: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))  # publish | rollback | refresh
    message: Mapped[str] = mapped_column(String(1000), default="")
    policies: Mapped[dict[str, int]] = mapped_column(JSON)  # name -> version
    key_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    bundle: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str | None] = mapped_column(String(320))


class Gateway(TenantScoped, Base):
    """A gateway runtime and its sidecar; both present the same credential (`kgw_…`)."""

    __tablename__ = "gateways"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    environment: Mapped[str] = mapped_column(String(16))  # dev | stage | prod
    url: Mapped[str] = mapped_column(String(2048))
    mode: Mapped[str] = mapped_column(String(16), default="shared")  # shared | dedicated
    credential_prefix: Mapped[str] = mapped_column(String(16))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GatewayInstance(TenantScoped, Base):
    """The last status report of one sidecar (or gateway) process of a gateway."""

    __tablename__ = "gateway_instances"
    __table_args__ = (UniqueConstraint("gateway_id", "instance"),)

    gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("gateways.id", ondelete="CASCADE"), index=True
    )
    instance: Mapped[str] = mapped_column(String(200))
    bundle_revision: Mapped[int | None] = mapped_column(BigInteger)
    key_id: Mapped[str | None] = mapped_column(String(64))
    last_sync: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decisions: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    log_backlog: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DecisionLog(TenantScoped, Base):
    """One authorization decision as a sidecar (or a stock OPA) logged it, input masked at
    source. On PostgreSQL the table is range-partitioned by `time`, one partition a month
    (`db/partitions.py`), so `time` is in the primary key and in every unique constraint.
    `sequence` and `chain_hash` chain each organisation's decisions in ingest order
    (`services/decision_chain.py`)."""

    __tablename__ = "decision_logs"
    __table_args__ = (
        UniqueConstraint("organization_id", "decision_id", "time"),
        # Every index leads with the tenant: each query is one organisation's.
        Index("ix_decision_logs_recent", "organization_id", "time", "decision_id"),
        Index("ix_decision_logs_sequence", "organization_id", "sequence"),
        Index("ix_decision_logs_principal", "organization_id", "principal", "time"),
        Index("ix_decision_logs_action", "organization_id", "action", "time"),
        Index("ix_decision_logs_resource", "organization_id", "resource", "time"),
        Index("ix_decision_logs_outcome", "organization_id", "outcome", "time"),
        Index("ix_decision_logs_gateway", "organization_id", "gateway_id", "time"),
        Index("ix_decision_logs_workspace", "organization_id", "workspace", "time"),
        Index("ix_decision_logs_bundle", "organization_id", "bundle_revision", "time"),
        {"postgresql_partition_by": "RANGE (time)"},
    )

    decision_id: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    chain_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # sidecar | opa
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    instance: Mapped[str | None] = mapped_column(String(200))
    principal: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str | None] = mapped_column(String(64))
    resource: Mapped[str | None] = mapped_column(String(320))
    workspace: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[str | None] = mapped_column(Text)  # newline-joined, for `reason` search
    bundle_revision: Mapped[str | None] = mapped_column(String(32))
    duration_us: Mapped[int | None] = mapped_column(BigInteger)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class Execution(TenantScoped, Base):
    """One agent or pipeline run on a gateway."""

    __tablename__ = "executions"
    __table_args__ = (UniqueConstraint("organization_id", "execution_id"),)

    execution_id: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    principal: Mapped[str | None] = mapped_column(String(320), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # agent | pipeline
    name: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(String(2000))
    decision_id: Mapped[str | None] = mapped_column(String(64))


GLOBAL_MODELS: dict[type[Base], str] = {
    Organization: "the tenant itself; reached only by the id in the caller's credential",
    User: "a person may belong to several organisations; reached through Membership",
    SigningKey: "key material read by the key ring for every tenant (platform keys, and each "
    "organisation's bundle keys by organization_id); public halves are published",
}


# -- secrets (M7): the database backend of the secrets interface ------------------------------


class Secret(TenantScoped, Base):
    """One secret, envelope-encrypted: `ciphertext` under its own data key, and that data key
    wrapped by the master key named by `key_id` (rotatable without touching `ciphertext`)."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(300))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(128), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- agents, pipelines and deployments (M4) ---------------------------------------------------


class Workload(TenantScoped, Base):
    """An agent or a pipeline by name; its configs live in versions."""

    __tablename__ = "workloads"
    __table_args__ = (UniqueConstraint("organization_id", "kind", "name"),)

    kind: Mapped[str] = mapped_column(String(16))  # agent | pipeline
    name: Mapped[str] = mapped_column(String(128))
    latest_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WorkloadVersion(TenantScoped, Base):
    """One immutable config of a workload: the document as written and as validated."""

    __tablename__ = "workload_versions"
    __table_args__ = (UniqueConstraint("workload_id", "version"),)

    workload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # policy.workloads `to_dict()`
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the canonical JSON of `config`
    created_by: Mapped[str | None] = mapped_column(String(320))


class Deployment(TenantScoped, Base):
    """A workload version served by a gateway; `requires` pins the versions of the agents it
    references (tools, pipeline roles), which ride along in the bundle."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("gateway_id", "kind", "name"),)

    gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("gateways.id", ondelete="CASCADE"), index=True
    )
    workload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    requires: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- single sign-on (M7): OIDC and SAML providers, email-domain routing, enforced SSO ------


class SsoProvider(TenantScoped, Base):
    """An organisation's identity provider. Its OIDC client secret and SAML SP private key
    live in the secrets store (`sso/<id>/client_secret`, `sso/<id>/sp_key`), never here."""

    __tablename__ = "sso_providers"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    type: Mapped[str] = mapped_column(String(8))  # oidc | saml
    name: Mapped[str] = mapped_column(String(100))
    preset: Mapped[str] = mapped_column(String(16))  # azure_ad | okta | google | generic
    enabled: Mapped[bool] = mapped_column(default=True)
    issuer: Mapped[str | None] = mapped_column(String(2048))
    discovery_url: Mapped[str | None] = mapped_column(String(2048))
    client_id: Mapped[str | None] = mapped_column(String(512))
    has_client_secret: Mapped[bool] = mapped_column(default=False)
    saml_idp_metadata: Mapped[str | None] = mapped_column(Text)
    saml_idp_entity_id: Mapped[str | None] = mapped_column(String(2048))
    saml_idp_sso_url: Mapped[str | None] = mapped_column(String(2048))
    saml_idp_certificate: Mapped[str | None] = mapped_column(Text)
    saml_sp_certificate: Mapped[str | None] = mapped_column(Text)
    groups_claim: Mapped[str] = mapped_column(String(100), default="groups")
    # [{group, role, teams: [...]}], applied on every login.
    group_mapping: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    default_role: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SsoDomain(TenantScoped, Base):
    """An email domain routed to one provider; a domain belongs to one organisation only."""

    __tablename__ = "sso_domains"

    domain: Mapped[str] = mapped_column(String(253), unique=True)
    provider_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("sso_providers.id", ondelete="CASCADE"), index=True
    )


class SsoSettings(TenantScoped, Base):
    """Whether members must log in through SSO, and the owners exempt from it (break-glass)."""

    __tablename__ = "sso_settings"
    __table_args__ = (UniqueConstraint("organization_id"),)

    sso_required: Mapped[bool] = mapped_column(default=False)
    break_glass_user_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- approvals, webhooks and notifications (M5) -----------------------------------------------


class ApprovalRequest(TenantScoped, Base):
    """A held call (a `require_approval` decision) waiting for an approver; `request_id` is the
    decision id the sidecar answered with as `approval_request_id`."""

    __tablename__ = "approval_requests"
    __table_args__ = (UniqueConstraint("organization_id", "request_id"),)

    request_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|approved|denied|expired
    principal: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(320))
    args_hash: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    approver_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Attributed by the control plane (services/approval_sources.py), never taken as text:
    # the requester's user id, the gateway that shipped the held decision, the body hash a
    # grant binds (`/invoke`, `/run`) and the bundle revision whose approvers apply.
    requester_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    bundle_revision: Mapped[int | None] = mapped_column(BigInteger)
    decision_time: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(320))
    comment: Mapped[str | None] = mapped_column(String(2000))
    # The grant's claims are kept, never the signed token: it is re-signed for its requester.
    grant_jti: Mapped[str | None] = mapped_column(String(64))
    grant_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    grant_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when a sidecar without shared Redis redeems the grant here (single use).
    grant_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Email to approvers is sent from here by the notification worker (an outbox of one).
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Webhook(TenantScoped, Base):
    """An HTTPS endpoint subscribed to events; its signing secret is in the secret store."""

    __tablename__ = "webhooks"

    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(1000), default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(TenantScoped, Base):
    """One event for one webhook: the durable outbox row and, once sent, its delivery log."""

    __tablename__ = "webhook_deliveries"

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NotificationCounter(TenantScoped, Base):
    """Counts toward a threshold in one window (denials of a principal, a budget's limit) and
    remembers when its event fired, so each fires once per window."""

    __tablename__ = "notification_counters"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    key: Mapped[str] = mapped_column(String(400))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


# -- impact replay and the publish gate (M5) --------------------------------------------------


class ReplayJob(TenantScoped, Base):
    """A replay of stored decisions against a policy set; the row is the job's only state."""

    __tablename__ = "replay_jobs"

    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|completed|failed
    policy_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("policies.id", ondelete="SET NULL")
    )  # the `{id}` form; None for the whole set
    draft: Mapped[bool] = mapped_column(default=True)
    policies: Mapped[dict[str, int]] = mapped_column(JSON)  # name -> version replayed
    policies_hash: Mapped[str] = mapped_column(String(64), index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    max_decisions: Mapped[int] = mapped_column(Integer)
    examples_per_transition: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    processed: Mapped[int] = mapped_column(BigInteger, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(2000))
    created_by: Mapped[str | None] = mapped_column(String(320))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PolicySettings(TenantScoped, Base):
    """Per-organisation policy settings: whether publishing needs a clean replay first."""

    __tablename__ = "policy_settings"
    __table_args__ = (UniqueConstraint("organization_id"),)

    require_replay_before_publish: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- MFA and browser sessions (M7) ------------------------------------------------------


class TotpCredential(Base):
    """A user's TOTP authenticator; the secret is AES-GCM sealed under the master key."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # None while enrolment awaits its first code.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last accepted 30-second step: a code is refused at or before it (no replay).
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One single-use recovery code of a user, by SHA-256 (the codes are random)."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MfaPolicy(TenantScoped, Base):
    """Which organisation roles must have a second factor to use the API."""

    __tablename__ = "mfa_policies"
    __table_args__ = (UniqueConstraint("organization_id"),)

    required_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserSession(TenantScoped, Base):
    """A login (token pair or browser cookie); its live state is in the key-value store."""

    __tablename__ = "user_sessions"

    sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # token | cookie
    user_agent: Mapped[str | None] = mapped_column(String(512))
    source_ip: Mapped[str | None] = mapped_column(String(64))


class RevokedSession(TenantScoped, Base):
    """A session ended while access tokens of it may still be live (M8).

    The organisation's bundle carries these sids so sidecars refuse the tokens at once;
    after `expires_at` every token of the session has expired and the row is dropped."""

    __tablename__ = "revoked_sessions"
    __table_args__ = (UniqueConstraint("organization_id", "sid"),)

    sid: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


GLOBAL_MODELS[TotpCredential] = "a person's second factor, like their password, is the User's"
GLOBAL_MODELS[RecoveryCode] = "belongs to the User's second factor, not to one organisation"


# --- M5 decision-log store ---------------------------------------------------------------


class DecisionChain(TenantScoped, Base):
    """An organisation's decision-log chain head, its retention, and what expiry removed.

    Ingest locks this row, so one organisation's decisions are chained one batch at a time.
    `expired` lists `[first, last, chain_hash of last]` sequence ranges that retention
    deleted, so verification can step over them and nothing else."""

    __tablename__ = "decision_chains"
    __table_args__ = (UniqueConstraint("organization_id"),)

    head_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))
    retention_days: Mapped[int] = mapped_column(Integer, default=365)
    expired: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    expired_before: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- M3 budget usage, as the sidecars' counters report it ------------------------------------


class BudgetUsage(TenantScoped, Base):
    """One budget's counter in one period window, as last reported by a sidecar.

    Sidecars share the counters (Redis), so every report of the same window carries the
    same running total; the newest report wins."""

    __tablename__ = "budget_usage"
    __table_args__ = (UniqueConstraint("organization_id", "budget", "window"),)

    budget: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(320))
    metric: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(16))
    window: Mapped[str] = mapped_column(String(32), index=True)
    used: Mapped[float] = mapped_column(default=0.0)
    limit: Mapped[float] = mapped_column(default=0.0)
    soft_limit: Mapped[float | None] = mapped_column()
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


# --- M8 identity across tenants: verified email domains, SSO account links ---------------------


class OrganizationDomain(TenantScoped, Base):
    """An email domain an organisation claims. A claim grants nothing until the DNS TXT
    record `kaizen-studio-verification=<token>` proves control of the domain; a domain is
    verified by one organisation at most (the partial unique index), never first-come."""

    __tablename__ = "organization_domains"
    __table_args__ = (
        UniqueConstraint("organization_id", "domain"),
        Index(
            "uq_organization_domains_verified_domain",
            "domain",
            unique=True,
            postgresql_where=text("verified_at IS NOT NULL"),
            sqlite_where=text("verified_at IS NOT NULL"),
        ),
    )

    domain: Mapped[str] = mapped_column(String(253))
    token: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SsoLink(TenantScoped, Base):
    """Which user an IdP subject signs in. Made only with proof: JIT creation, the account
    being a member of this provider's organisation alone, or the account's own password."""

    __tablename__ = "sso_links"
    __table_args__ = (
        UniqueConstraint("provider_id", "subject"),
        UniqueConstraint("provider_id", "user_id"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("sso_providers.id", ondelete="CASCADE")
    )
    subject: Mapped[str] = mapped_column(String(512))
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # "password": the account's owner proved it; "organisation": made for a member of this
    # organisation alone (or created by JIT), void once the account joins another one.
    proof: Mapped[str] = mapped_column(String(16))
