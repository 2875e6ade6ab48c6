"""Validated policy set + tenant context → CompiledPolicy (Casbin text, Rego, data.json).

Everything here is deterministic: the same input gives byte-identical output (sorted keys
and lines, canonical JSON), so a bundle changes only when the policy does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.compile.casbin_model import CASBIN_MODEL, casbin_policy_lines
from policy.documents.policy_set import PolicySet
from policy.errors import PolicyError

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class CompileError(PolicyError):
    """The compile context (not the policies, which are already valid) is unusable."""


@dataclass(frozen=True)
class CompileContext:
    organization_id: str
    # {name, key_hash (sha256 hex), roles?, scopes?, expires_at? (Unix seconds)}
    api_keys: Sequence[Mapping[str, Any]] = ()
    # Session ids (`sid` claims) revoked while access tokens of theirs may still be live.
    revoked_sessions: Sequence[str] = ()
    jwks: Mapping[str, Any] = field(default_factory=lambda: {"keys": []})
    agents: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pipelines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Each gateway's canonical MCP URL (the RFC 8707 resource its OAuth tokens name), keyed
    # by its credential's grant binding (authz_sidecar.grants.gateway_binding): a sidecar
    # finds its own by its credential and accepts OAuth tokens only with that audience.
    mcp_resources: Mapping[str, str] = field(default_factory=dict)
    # Connection settings (never a password) of the connectors deployed agents name.
    connectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledPolicy:
    """What a bundle carries; rebuildable from a bundle's data.json and Rego files alone."""

    organization_id: str
    data: Mapping[str, Any]
    rego_modules: Mapping[str, str]  # bundle path (kaizen/abac/<name>/policy.rego) → text
    casbin_model: str = CASBIN_MODEL
    casbin_policy: tuple[str, ...] = ()

    @classmethod
    def from_bundle_parts(
        cls, data: Mapping[str, Any], rego_modules: Mapping[str, str]
    ) -> CompiledPolicy:
        kaizen = data.get("kaizen")
        if not isinstance(kaizen, Mapping) or not isinstance(kaizen.get("organization"), str):
            raise CompileError("data.json has no kaizen.organization")
        return cls(
            organization_id=kaizen["organization"],
            data=data,
            rego_modules=dict(sorted(rego_modules.items())),
            casbin_policy=casbin_policy_lines(kaizen.get("roles", {}), kaizen.get("bindings", [])),
        )

    @property
    def kaizen(self) -> Mapping[str, Any]:
        value: Mapping[str, Any] = self.data["kaizen"]
        return value

    def data_json(self) -> bytes:
        return canonical_json(self.data)

    def casbin_policy_text(self) -> str:
        return "".join(line + "\n" for line in self.casbin_policy)


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8: stable bytes for files we write."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def compile_policy(policy_set: PolicySet, context: CompileContext) -> CompiledPolicy:
    roles = {
        name: _role_data(role.permissions, role.inherits, role.description)
        for name, role in sorted(policy_set.roles.items())
    }
    bindings = sorted(
        {(b.subject, b.role, b.workspace or "") for b in policy_set.bindings},
    )
    kaizen: dict[str, Any] = {
        "organization": _organization(context.organization_id),
        "roles": roles,
        "bindings": [
            {"subject": s, "role": r, **({"workspace": w} if w else {})} for s, r, w in bindings
        ],
        "budgets": sorted((b.to_dict() for b in policy_set.budgets), key=lambda b: str(b["name"])),
        "api_keys": _api_keys(context.api_keys),
        "jwks": _json_copy(context.jwks, "jwks"),
        "agents": _json_copy(context.agents, "agents"),
        "pipelines": _json_copy(context.pipelines, "pipelines"),
    }
    if context.connectors:  # absent when no deployed agent names one (bundles stay as they were)
        kaizen["connectors"] = _json_copy(context.connectors, "connectors")
    approvals = {
        doc.package: list(doc.approvers)
        for doc in policy_set.rego_policies
        if doc.approvers and doc.package
    }
    if approvals:  # absent otherwise, so bundles without approvers keep their bytes
        kaizen["approvals"] = dict(sorted(approvals.items()))
    if context.revoked_sessions:
        kaizen["revoked_sessions"] = _revoked_sessions(context.revoked_sessions)
    if context.mcp_resources:  # absent otherwise, so bundles without gateways keep their bytes
        kaizen["mcp_resources"] = _mcp_resources(context.mcp_resources)
    modules = {doc.module_path: doc.rego for doc in policy_set.rego_policies}
    return CompiledPolicy.from_bundle_parts({"kaizen": kaizen}, modules)


def _role_data(
    permissions: Sequence[Any], inherits: Sequence[str], description: str | None
) -> dict[str, Any]:
    merged: dict[str, set[str]] = {}
    for permission in permissions:
        merged.setdefault(permission.resource, set()).update(permission.actions)
    out: dict[str, Any] = {
        "inherits": sorted(set(inherits)),
        "permissions": [
            {"resource": resource, "actions": sorted(actions)}
            for resource, actions in sorted(merged.items())
        ],
    }
    if description is not None:
        out["description"] = description
    return out


def _organization(organization_id: str) -> str:
    if not organization_id or not isinstance(organization_id, str):
        raise CompileError("organization_id must be a non-empty string")
    return organization_id


def _api_keys(api_keys: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Keyed by hash, so authenticating a presented key is one lookup."""
    out: dict[str, Any] = {}
    names: set[str] = set()
    for key in api_keys:
        name, key_hash = key.get("name"), key.get("key_hash")
        roles = key.get("roles", [])
        if not isinstance(name, str) or not name:
            raise CompileError(f"API key without a name: {key!r}")
        if not isinstance(key_hash, str) or not _SHA256_HEX.fullmatch(key_hash):
            raise CompileError(f"API key {name}: key_hash must be 64 lowercase hex characters")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise CompileError(f"API key {name}: roles must be a list of strings")
        if name in names or key_hash in out:
            raise CompileError(f"API key {name}: duplicate name or hash")
        names.add(name)
        entry: dict[str, Any] = {"name": name, "roles": sorted(set(roles))}
        # Scopes and expiry travel with the key, so a sidecar enforces both on its own.
        scopes, expires_at = key.get("scopes") or [], key.get("expires_at")
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            raise CompileError(f"API key {name}: scopes must be a list of strings")
        if scopes:
            entry["scopes"] = sorted(set(scopes))
        if expires_at is not None:
            if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at <= 0:
                raise CompileError(f"API key {name}: expires_at must be Unix seconds")
            entry["expires_at"] = expires_at
        out[key_hash] = entry
    return dict(sorted(out.items()))


def _revoked_sessions(sids: Sequence[str]) -> list[str]:
    if not all(isinstance(sid, str) and sid for sid in sids):
        raise CompileError("revoked_sessions must be non-empty session ids")
    return sorted(set(sids))


def _mcp_resources(resources: Mapping[str, str]) -> dict[str, str]:
    for binding, url in resources.items():
        if not (isinstance(binding, str) and binding and isinstance(url, str)):
            raise CompileError("mcp_resources maps gateway bindings to URLs")
        if not url.startswith(("https://", "http://")):
            raise CompileError(f"mcp_resources: {url!r} is not an http(s) URL")
    return dict(sorted(resources.items()))


def _json_copy(value: Mapping[str, Any], what: str) -> Any:
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError) as exc:
        raise CompileError(f"{what} is not JSON: {exc}") from None
