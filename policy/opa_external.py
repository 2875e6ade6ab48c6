"""ABAC on an external OPA server through its REST API (opa-python-client).

On construction the evaluator can push the tenant's modules (`PUT /v1/policies/<path>`)
and data (`PUT /v1/data/kaizen`); each decision is one `POST /v1/data/kaizen/abac` with
strict built-in errors, whose result tree holds every package's `deny` and
`require_approval`. One OPA server serves one bundle scope, as with bundles: packages
are not namespaced per tenant. Any transport or OPA error is an `AbacResult.error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opa_client import OpaClient

from policy.abac import AbacResult, Reasons, reasons_from
from policy.rego_compile import ABAC_PACKAGE, read_package


class ExternalOpaEvaluator:
    def __init__(
        self,
        client: OpaClient,
        modules: Mapping[str, str],
        data: Mapping[str, Any] | None = None,
        *,
        push: bool = True,
    ) -> None:
        self._client = client
        self.packages = tuple(sorted({read_package(source) or "" for source in modules.values()}))
        if push:
            for path, source in sorted(modules.items()):
                client.update_policy_from_string(source, path, rego_compat=False)
            if data is not None and "kaizen" in data:
                client.update_or_create_data(dict(data["kaizen"]), "kaizen")

    @classmethod
    def connect(
        cls,
        url: str,
        modules: Mapping[str, str],
        data: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        timeout: float = 1.5,
        push: bool = True,
    ) -> ExternalOpaEvaluator:
        """`url` like http://127.0.0.1:8181 (the /v1 API root is implied)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA URL must be http(s)://host:port, got {url!r}")
        client = OpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 8181),
            ssl=parts.scheme == "https",
            token=token,
            timeout=timeout,
            retries=0,  # a decision must not wait on retries; the engine fails closed
        )
        return cls(client, modules, data, push=push)

    def evaluate(self, input: Mapping[str, Any]) -> AbacResult:
        try:
            response = self._client.query_rule(
                dict(input),
                ABAC_PACKAGE,
                query_params={"strict-builtin-errors": "true"},
            )
        except Exception as exc:  # requests, opa_client and JSON errors alike: fail closed
            return AbacResult(error=f"OPA query failed: {exc}")
        tree = response.get("result") if isinstance(response, dict) else None
        if not isinstance(tree, dict):
            return AbacResult(error="OPA returned no result for data.kaizen.abac")
        try:
            deny: list[tuple[str, str]] = []
            approval: list[tuple[str, str]] = []
            for package in self.packages:
                node = _package_node(tree, package)
                deny.extend(_pairs(package, node.get("deny", []), "deny"))
                approval.extend(
                    _pairs(package, node.get("require_approval", []), "require_approval")
                )
        except TypeError as exc:
            return AbacResult(error=str(exc))
        return AbacResult(deny=tuple(sorted(deny)), require_approval=tuple(sorted(approval)))

    def close(self) -> None:
        self._client.close_connection()


def _package_node(tree: Mapping[str, Any], package: str) -> Mapping[str, Any]:
    node: Any = tree
    for segment in package.split(".")[len(ABAC_PACKAGE.split(".")) :]:
        node = node.get(segment, {}) if isinstance(node, Mapping) else {}
    if not isinstance(node, Mapping):
        raise TypeError(f"data.{package} is not a package")
    return node


def _pairs(package: str, values: object, rule: str) -> Reasons:
    if not isinstance(values, list):
        raise TypeError(f"data.{package}.{rule} is not a set")
    return reasons_from([[package, value] for value in values], rule)
