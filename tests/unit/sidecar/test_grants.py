"""Approval grants: bound to one request, single use, never turning a deny into an allow."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.grants import NoSharedReplayGuard, RedisReplayGuard
from authz_sidecar.mapping import HttpFacts
from tests.unit.sidecar.factory import ALICE, BOB, Keys, access_token, approval_grant, make_keys

DEPLOYER = "/v1/agents/deployer/invoke"


def request(keys: Keys, path: str = DEPLOYER, email: str = ALICE, grant: str | None = None):
    headers = {"authorization": f"Bearer {access_token(keys, email)}"}
    if grant is not None:
        headers["x-kaizen-approval"] = grant
    return HttpFacts("POST", path, headers)


async def test_grant_allows_a_held_call_once(authorizer: Authorizer, keys: Keys) -> None:
    held = await authorizer.check(request(keys))
    assert (held.status, held.outcome) == (403, "require_approval")
    assert held.approval_request_id == held.decision_id
    grant = approval_grant(keys, approval_request_id="apr-1")
    allowed = await authorizer.check(request(keys, grant=grant))
    assert (allowed.status, allowed.outcome) == (200, "allow")
    assert allowed.reasons == ("approved by approval request apr-1",)
    again = await authorizer.check(request(keys, grant=grant))
    assert again.status == 403
    assert "approval grant was already used; ask for a new approval" in again.reasons


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sub": "user:mallory@example.com"}, "different principal"),
        ({"action": "run"}, "different action"),
        ({"resource": "agent:other"}, "different resource"),
        ({"arguments": {"x": 1}}, "different set of tool arguments"),
        ({"org": "org-other"}, "another organization"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "kaizen-studio-api"}, "audience"),
        ({"typ": "JWT"}, "token type"),
        ({"gateway_token": "kgw_another_gateway"}, "granted for another gateway"),
        ({"body": b'{"input":"something else"}'}, "granted for a different body"),
        ({"body": None}, "granted for a different body"),
    ],
)
async def test_grant_for_something_else_is_refused(
    authorizer: Authorizer, keys: Keys, overrides: dict[str, object], reason: str
) -> None:
    verdict = await authorizer.check(request(keys, grant=approval_grant(keys, **overrides)))
    assert verdict.outcome == "require_approval"
    assert any(reason in r for r in verdict.reasons), verdict.reasons


async def test_grant_signed_by_an_unknown_key_is_refused(
    authorizer: Authorizer, keys: Keys
) -> None:
    verdict = await authorizer.check(request(keys, grant=approval_grant(make_keys("rogue"))))
    assert verdict.status == 403
    assert any("does not know" in r for r in verdict.reasons)


async def test_grant_never_turns_a_deny_into_an_allow(authorizer: Authorizer, keys: Keys) -> None:
    grant = approval_grant(keys, sub=f"user:{BOB}")  # bob has no role: RBAC denies
    verdict = await authorizer.check(request(keys, email=BOB, grant=grant))
    assert (verdict.status, verdict.outcome) == (403, "deny")
    # ...and the grant was not spent on it.
    assert await authorizer.replay_guard.first_use("unrelated", time.time() + 60)


async def test_redis_replay_guard_is_shared(async_redis: aioredis.Redis, redis_prefix: str) -> None:
    one, two = (
        RedisReplayGuard(async_redis, redis_prefix),
        RedisReplayGuard(async_redis, redis_prefix),
    )
    expires = time.time() + 60
    assert await one.first_use("jti-1", expires)
    assert not await two.first_use("jti-1", expires)
    ttl = await async_redis.pttl(f"{redis_prefix}grant:jti-1")
    assert 60_000 < ttl <= 121_000


async def test_unreachable_replay_store_keeps_the_call_held(
    authorizer: Authorizer, keys: Keys
) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    authorizer.replay_guard = RedisReplayGuard(dead, "x:")
    verdict = await authorizer.check(request(keys, grant=approval_grant(keys)))
    await dead.aclose()
    assert verdict.outcome == "require_approval"
    assert any("cannot be checked for reuse" in r for r in verdict.reasons)


async def test_grant_is_refused_where_the_sidecar_did_not_see_the_body(
    authorizer: Authorizer, keys: Keys
) -> None:
    facts = request(keys, grant=approval_grant(keys))
    unseen = HttpFacts(facts.method, facts.path, facts.headers, body_seen=False)
    verdict = await authorizer.check(unseen)
    assert verdict.outcome == "require_approval"
    assert any("did not see this request's body" in r for r in verdict.reasons)


async def test_sidecar_without_shared_redis_refuses_grants(
    authorizer: Authorizer, keys: Keys
) -> None:
    authorizer.replay_guard = NoSharedReplayGuard()
    verdict = await authorizer.check(request(keys, grant=approval_grant(keys)))
    assert verdict.outcome == "require_approval"
    assert any("need shared Redis" in r for r in verdict.reasons)
