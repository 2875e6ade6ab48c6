"""AuthZEN 1.0 requests (OpenID Authorization API 1.0) → what our decision input needs.

Pure: JSON in, `Evaluation`s or an `AuthzenError` naming the field out. The routes
(authzen_http) authenticate the caller and hand each Evaluation to `Authorizer.evaluate`,
the same decision path as every gateway check.

The mapping (authz_sidecar/README.md, "AuthZEN"):

- `subject {type, id, properties}` → `principal {id: "<type>:<id>", type, attributes:
  properties}`. Roles and teams are never the caller's word: RBAC finds the subject's roles
  in the bundle's bindings (`user:alice@example.com` → its roles), as for any principal;
  a subject of type `apikey` is also given that key's own roles and scopes (`as_api_key`).
- `action {name, properties}` → `action: name`; `properties` → `input.action_properties`.
- `resource {type, id, properties}` → `resource {type, id: "<type>:<id>", attributes:
  properties}`; the workspace is the sidecar's (KAIZEN_SIDECAR_WORKSPACE), never the caller's.
- `context` → `input.context`, under the sidecar's own `time`, `environment`, `gateway`.

An id already starting with `<type>:` is taken as it is, so `{type: "agent", id:
"agent:support-bot"}` and `{type: "agent", id: "support-bot"}` name the same resource.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from authz_sidecar.authn import AuthenticationError, Authenticator, scope_refusal
from policy.engine.decision_input import now_text

MAX_EVALUATIONS = 100
MAX_ID = 512
TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Principal ids `role:<name>` are how Casbin names roles: a subject must never pose as one.
_NOT_SUBJECTS = frozenset({"role"})
_ESTIMATES = ("estimated_cost_usd", "estimated_tokens")

Semantic = Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"]
SEMANTICS: tuple[Semantic, ...] = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")


class AuthzenError(Exception):
    """A request (or one evaluation of a batch) that cannot be evaluated: 400 naming `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One access evaluation, validated and mapped to our names."""

    subject_type: str
    principal_id: str
    subject_properties: dict[str, Any]
    action: str
    resource_type: str
    resource_id: str
    resource_properties: dict[str, Any]
    action_properties: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def decision_input(
        self,
        *,
        organization: str,
        workspace: str | None,
        environment: str | None,
        gateway: str | None,
        request: dict[str, Any],
    ) -> dict[str, Any]:
        """The decision input (CONTRACTS.md) this evaluation asks about, channel `api`."""
        context = {
            **self.context,
            # The PDP's clock and this sidecar's configuration, as for a gateway check.
            "time": now_text(),
            "environment": environment or workspace,
            "gateway": gateway,
        }
        input: dict[str, Any] = {
            "principal": {
                "id": self.principal_id,
                "type": self.subject_type,
                "organization": organization,
                "roles": [],
                "teams": [],
                "attributes": self.subject_properties,
            },
            "action": self.action,
            "resource": {
                "type": self.resource_type,
                "id": self.resource_id,
                "workspace": workspace,
                "attributes": self.resource_properties,
            },
            "channel": "api",
            "request": request,
            "context": context,
        }
        if self.action_properties is not None:
            input["action_properties"] = self.action_properties
        return input


@dataclass(frozen=True, slots=True)
class Batch:
    """`/access/v1/evaluations`: the items in order (an item that cannot be evaluated is
    its AuthzenError), or `single` when the request has no evaluations (a single evaluation)."""

    items: tuple[Evaluation | AuthzenError, ...]
    semantic: Semantic = "execute_all"
    single: Evaluation | None = None


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, else AuthzenError naming `body`."""
    if not body.strip():
        raise AuthzenError("body", "is empty; send a JSON object")
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AuthzenError("body", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise AuthzenError("body", "must be a JSON object")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: RFC 8259 has no such numbers


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: a decision record must stay valid JSON
        raise ValueError("number out of range")
    return value


def evaluation(request: Mapping[str, Any], where: str = "") -> Evaluation:
    """An Access Evaluation request (subject, action, resource required; context optional)."""
    subject = _entity(request, "subject", where)
    action = _object(request, "action", where, required=True)
    resource = _entity(request, "resource", where)
    name = _name(action.get("name"), f"{where}action.name")
    context = _object(request, "context", where, required=False)
    for estimate in _ESTIMATES:
        value = context.get(estimate)
        if value is not None and not _non_negative(value):
            raise AuthzenError(f"{where}context.{estimate}", "must be a finite number ≥ 0")
    subject_type, subject_id, subject_properties = subject
    if subject_type in _NOT_SUBJECTS:
        raise AuthzenError(f"{where}subject.type", "role is not a subject; bindings grant roles")
    resource_type, resource_id, resource_properties = resource
    action_properties = _properties(action, f"{where}action")
    return Evaluation(
        subject_type=subject_type,
        principal_id=_qualified(subject_type, subject_id),
        subject_properties=subject_properties or {},
        action=name,
        resource_type=resource_type,
        resource_id=_qualified(resource_type, resource_id),
        resource_properties=resource_properties or {},
        action_properties=action_properties,
        context=context,
    )


def batch(request: Mapping[str, Any]) -> Batch:
    """An Access Evaluations request: top-level keys are defaults for each evaluation.

    A key an evaluation names replaces the default as a whole (no merging inside an
    entity); an evaluation that cannot be completed is its own error, the others go on."""
    items = request.get("evaluations")
    if items is None or items == []:
        return Batch((), single=evaluation(request))
    if not isinstance(items, list):
        raise AuthzenError("evaluations", "must be an array of evaluation objects")
    if len(items) > MAX_EVALUATIONS:
        raise AuthzenError("evaluations", f"has {len(items)} items; at most {MAX_EVALUATIONS}")
    options = request.get("options")
    if options is not None and not isinstance(options, dict):
        raise AuthzenError("options", "must be an object")
    semantic = (options or {}).get("evaluations_semantic", "execute_all")
    if semantic not in SEMANTICS:
        raise AuthzenError("options.evaluations_semantic", f"must be one of {', '.join(SEMANTICS)}")
    parsed: list[Evaluation | AuthzenError] = []
    for index, item in enumerate(items):
        where = f"evaluations[{index}]."
        if not isinstance(item, dict):
            parsed.append(AuthzenError(where[:-1], "must be an object"))
            continue
        merged = {
            key: item[key] if key in item else request.get(key)
            for key in ("subject", "action", "resource", "context")
        }
        try:
            parsed.append(evaluation(merged, where))
        except AuthzenError as exc:
            parsed.append(exc)
    return Batch(tuple(parsed), semantic)


def as_api_key(input: dict[str, Any], authenticator: Authenticator) -> str | None:
    """A subject of type `apikey` is that key of the bundle, as if it had called: its own
    roles and scopes (never the caller's `properties.scopes`), which narrow as at the
    gateway. Sets them in `input`; a refusal (no such key, expired, scope) or None."""
    principal = input["principal"]
    name = principal["id"].removeprefix("apikey:")
    try:
        key = authenticator.api_key_named(name)
    except AuthenticationError as exc:
        return f"subject {principal['id'][:100]}: {exc}"
    attributes = {k: v for k, v in principal["attributes"].items() if k != "scopes"}
    principal["attributes"] = {**attributes, **key["attributes"]}
    principal["roles"] = key["roles"]
    return scope_refusal(principal, input["action"], input["resource"]["type"])


def _entity(
    request: Mapping[str, Any], key: str, where: str
) -> tuple[str, str, dict[str, Any] | None]:
    entity = _object(request, key, where, required=True)
    kind = entity.get("type")
    if not isinstance(kind, str) or not TYPE_PATTERN.fullmatch(kind):
        raise AuthzenError(
            f"{where}{key}.type",
            "must be a string of letters, digits, '_', '.', '-' starting with a letter (≤ 64)",
        )
    identifier = entity.get("id")
    if not isinstance(identifier, str) or not identifier:
        raise AuthzenError(f"{where}{key}.id", "must be a non-empty string")
    if len(identifier) > MAX_ID or _CONTROL.search(identifier):
        raise AuthzenError(
            f"{where}{key}.id", f"must be at most {MAX_ID} characters without control characters"
        )
    return kind, identifier, _properties(entity, f"{where}{key}")


def _object(request: Mapping[str, Any], key: str, where: str, *, required: bool) -> dict[str, Any]:
    value = request.get(key)
    if value is None:
        if required:
            raise AuthzenError(f"{where}{key}", "is required")
        return {}
    if not isinstance(value, dict):
        raise AuthzenError(f"{where}{key}", "must be an object")
    return value


def _properties(entity: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    value = entity.get("properties")
    if value is not None and not isinstance(value, dict):
        raise AuthzenError(f"{path}.properties", "must be an object")
    return value


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise AuthzenError(path, "must be a non-empty string")
    if len(value) > 128 or _CONTROL.search(value):
        raise AuthzenError(path, "must be at most 128 characters without control characters")
    return value


def _qualified(kind: str, identifier: str) -> str:
    return identifier if identifier.startswith(f"{kind}:") else f"{kind}:{identifier}"


def _non_negative(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
