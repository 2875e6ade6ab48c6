"""OpenID Connect login with Authlib's client: discovery, authorization code + PKCE (S256),
state and nonce kept server-side (single use), and ID-token validation (JWKS signature,
`iss`, `aud`, `exp`, `iat`, `nonce`); groups from the ID token or the userinfo endpoint.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from control_plane.db.models import SsoProvider
from control_plane.errors import Unauthenticated, Unavailable
from control_plane.services.kv import KeyValueStore
from control_plane.services.sso import single_use
from control_plane.services.sso.identity import ExternalIdentity
from policy.net.outbound import OutboundGuard, OutboundRefused
from policy.net.outbound_http import guarded_httpx2_client, guarded_httpx2_transport

log = logging.getLogger(__name__)

# Asymmetric only: an HMAC-signed ID token would be keyed with our own client secret.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)
SCOPES = {
    "azure_ad": "openid email profile",
    "okta": "openid email profile groups",
    "google": "openid email profile",
    "generic": "openid email profile",
}
LEEWAY = 60  # seconds of clock skew tolerated on exp/iat/nbf
MAX_ID_TOKEN_AGE = 600  # an ID token issued longer ago than this is refused
_CACHE_TTL = 300
_TIMEOUT = 10.0

# Discovery documents and key sets, per provider configuration and URL: an edited or new
# provider never reads what an earlier configuration fetched (the same URL may now name
# another server), and one organisation's fetch is never another's answer. A key id we do
# not know forces a refetch.
_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}


def _version(provider: SsoProvider) -> str:
    return f"{provider.id}@{provider.updated_at.isoformat()}"


def _remember(key: tuple[str, str], document: dict[str, Any]) -> None:
    now = time.monotonic()
    for stale in [k for k, (expires, _) in _cache.items() if expires <= now]:
        del _cache[stale]
    _cache[key] = (now + _CACHE_TTL, document)


# The discovery URL, and every endpoint the discovery document names, are the tenant's (or
# their IdP's) word: each fetch goes through the outbound guard, redirects re-checked.
MAX_REDIRECTS = 3
FETCHED_ENDPOINTS = ("token_endpoint", "jwks_uri", "userinfo_endpoint")


def _refused(what: str, refused: OutboundRefused) -> Unauthenticated:
    return Unauthenticated(f"the identity provider's {what} is refused: {refused.message}")


async def _fetch_json(
    provider: SsoProvider, url: str, guard: OutboundGuard, what: str, *, force: bool = False
) -> dict[str, Any]:
    key = (_version(provider), url)
    cached = _cache.get(key)
    if cached and not force and cached[0] > time.monotonic():
        return cached[1]
    try:
        async with guarded_httpx2_client(
            guard, max_redirects=MAX_REDIRECTS, timeout=_TIMEOUT
        ) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
    except OutboundRefused as refused:
        raise _refused(what, refused) from None
    except (httpx2.HTTPError, ValueError) as error:
        log.warning("identity provider document unavailable: %s (%s)", url, type(error).__name__)
        raise Unavailable("the identity provider did not answer; try again") from None
    if not isinstance(document, dict):
        raise Unavailable("the identity provider sent a malformed document")
    _remember(key, document)
    return document


async def metadata(provider: SsoProvider, guard: OutboundGuard) -> dict[str, Any]:
    assert provider.discovery_url
    assert provider.issuer
    document = await _fetch_json(provider, provider.discovery_url, guard, "discovery_url")
    # OIDC Discovery §4.3: the document must name the issuer we were configured with.
    if str(document.get("issuer", "")).rstrip("/") != provider.issuer.rstrip("/"):
        raise Unauthenticated("the identity provider's discovery document names another issuer")
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(endpoint), str):
            raise Unavailable(f"the identity provider's discovery document lacks {endpoint}")
    # Refuse endpoints we would fetch (internal hosts, user@host, non-http schemes) before
    # the user is sent to the IdP; their addresses are checked again on each connection.
    for endpoint in FETCHED_ENDPOINTS:
        if isinstance(document.get(endpoint), str):  # a null userinfo_endpoint is absent
            try:
                await guard.check(document[endpoint], allow_unresolved=True)
            except OutboundRefused as refused:
                raise _refused(endpoint, refused) from None
    return document


def _client(
    provider: SsoProvider,
    client_secret: str | None,
    redirect_uri: str,
    meta: dict[str, Any],
    guard: OutboundGuard,
) -> AsyncOAuth2Client:
    supported = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if client_secret is None:
        method = "none"
    elif "client_secret_basic" in supported:
        method = "client_secret_basic"
    else:
        method = "client_secret_post"
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=client_secret,
        token_endpoint_auth_method=method,
        scope=SCOPES.get(provider.preset, SCOPES["generic"]),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=_TIMEOUT,
        transport=guarded_httpx2_transport(guard),
        trust_env=False,
    )


async def begin(
    kv: KeyValueStore,
    provider: SsoProvider,
    client_secret: str | None,
    redirect_uri: str,
    guard: OutboundGuard,
) -> str:
    """The IdP authorization URL; state, nonce and PKCE verifier stay with us, single-use."""
    meta = await metadata(provider, guard)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    async with _client(provider, client_secret, redirect_uri, meta, guard) as client:
        url, _ = client.create_authorization_url(
            meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
    await single_use.remember(
        kv,
        "oidc-state",
        state,
        {"provider": str(provider.id), "nonce": nonce, "verifier": verifier},
        single_use.STATE_TTL,
    )
    return str(url)


async def take_state(kv: KeyValueStore, provider: SsoProvider, state: str) -> dict[str, Any]:
    record = await single_use.take(kv, "oidc-state", state)
    if record is None or record.get("provider") != str(provider.id):
        raise Unauthenticated("unknown, expired or already used login state; start again")
    return record


async def finish(
    provider: SsoProvider,
    client_secret: str | None,
    redirect_uri: str,
    code: str,
    record: dict[str, Any],
    guard: OutboundGuard,
) -> ExternalIdentity:
    """Trade the code (with the PKCE verifier) for tokens and validate the ID token."""
    meta = await metadata(provider, guard)
    async with _client(provider, client_secret, redirect_uri, meta, guard) as client:
        try:
            token = await client.fetch_token(
                meta["token_endpoint"], code=code, code_verifier=record["verifier"]
            )
        except OutboundRefused as refused:
            raise _refused("token_endpoint", refused) from None
        except OAuthError as error:
            raise Unauthenticated(
                f"the identity provider refused the code: {error.error}"
            ) from None
        except httpx2.HTTPError:
            raise Unavailable("the identity provider's token endpoint did not answer") from None
        if not isinstance(token.get("id_token"), str):
            raise Unauthenticated("the identity provider sent no ID token")
        claims = await validate_id_token(provider, meta, token, record["nonce"], guard)
        groups = claims.get(provider.groups_claim)
        if groups is None and isinstance(meta.get("userinfo_endpoint"), str):
            claims = {**await _userinfo(client, meta["userinfo_endpoint"], claims), **claims}
    return _identity(provider, claims)


async def validate_id_token(
    provider: SsoProvider,
    meta: dict[str, Any],
    token: dict[str, Any],
    nonce: str,
    guard: OutboundGuard,
) -> dict[str, Any]:
    offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in offered if a in SIGNING_ALGORITHMS]
    if not algorithms:
        raise Unauthenticated("the identity provider signs ID tokens with no algorithm we accept")
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    try:
        jwks: Any = await _fetch_json(provider, meta["jwks_uri"], guard, "jwks_uri")
        keys = KeySet.import_key_set(jwks)
        try:
            decoded = jwt.decode(token["id_token"], keys, registry=registry)
        except InvalidKeyIdError:  # the IdP may have rotated its keys since we cached them
            jwks = await _fetch_json(provider, meta["jwks_uri"], guard, "jwks_uri", force=True)
            keys = KeySet.import_key_set(jwks)
            decoded = jwt.decode(token["id_token"], keys, registry=registry)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": provider.issuer},
                "aud": {"essential": True, "value": provider.client_id},
                "nonce": {"essential": True, "value": nonce},
            },
            {
                "nonce": nonce,
                "client_id": provider.client_id,
                "access_token": token.get("access_token"),
            },
        )
        claims.validate(leeway=LEEWAY)
    except (JoseError, ValueError) as error:
        raise Unauthenticated(f"ID token rejected: {_describe(error)}") from None
    if claims["iat"] < time.time() - MAX_ID_TOKEN_AGE:
        raise Unauthenticated("ID token rejected: issued too long ago")
    return dict(claims)


def _describe(error: Exception) -> str:
    description = getattr(error, "description", None) or getattr(error, "error", None)
    return str(description or type(error).__name__)


async def _userinfo(
    client: AsyncOAuth2Client, endpoint: str, claims: dict[str, Any]
) -> dict[str, Any]:
    try:
        response = await client.get(endpoint)
        response.raise_for_status()
        info = response.json()
    except OutboundRefused as refused:
        raise _refused("userinfo_endpoint", refused) from None
    except (httpx2.HTTPError, ValueError, OAuthError):
        raise Unavailable("the identity provider's userinfo endpoint did not answer") from None
    # OIDC Core §5.3.2: userinfo about anyone but the ID token's subject is discarded.
    if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
        raise Unauthenticated("userinfo is about another subject than the ID token")
    return info


def _identity(provider: SsoProvider, claims: dict[str, Any]) -> ExternalIdentity:
    email = claims.get("email")
    if not email and provider.preset == "azure_ad":
        email = claims.get("preferred_username") or claims.get("upn")
    if not isinstance(email, str) or "@" not in email:
        raise Unauthenticated("the identity provider sent no email address")
    if claims.get("email_verified") is False:
        raise Unauthenticated("the identity provider has not verified this email address")
    groups = claims.get(provider.groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        raise Unauthenticated(f"claim {provider.groups_claim!r} is not a list of groups")
    name = claims.get("name")
    return ExternalIdentity(
        subject=str(claims["sub"]),
        email=email,
        display_name=name[:200] if isinstance(name, str) else None,
        groups=tuple(str(g) for g in groups)[:500],
    )
