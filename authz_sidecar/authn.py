"""Who is calling: an access JWT or an API key, checked against the current bundle only.

JWTs verify with the bundle's JWKS, EdDSA only: the algorithm is fixed here, never taken
from the token, so `alg: none` and HS256-signed-with-the-public-key cannot pass.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import jwt
from jwt import PyJWK

ALGORITHM = "EdDSA"
# RFC 9068: an MCP client's access token from the control plane's authorization server.
OAUTH_TOKEN_TYP = "at+jwt"  # noqa: S105  (a JOSE header value)
API_KEY_PREFIX = "ks_"
LEEWAY_SECONDS = 30
_MAX_CREDENTIAL = 8192
_CACHE_SIZE = 10_000


class AuthenticationError(Exception):
    """No usable credential; the message is safe to show the caller (never the token)."""


def signing_keys(jwks: object) -> dict[str, PyJWK]:
    """The Ed25519 keys of a JWKS by kid; other key types cannot sign our tokens."""
    keys: dict[str, PyJWK] = {}
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("crv") != "Ed25519":
            continue
        if entry.get("use") not in (None, "sig") or entry.get("alg") not in (None, ALGORITHM):
            continue
        try:
            keys[kid] = PyJWK(dict(entry), algorithm=ALGORITHM)
        except jwt.PyJWTError:
            continue
    return keys


def verify_eddsa(
    token: str,
    keys: Mapping[str, PyJWK],
    *,
    audience: str,
    issuer: str,
    typ_header: str | None = None,
    required: tuple[str, ...] = ("exp", "iat"),
) -> dict[str, Any]:
    """Claims of a compact JWS signed by one of `keys`; AuthenticationError otherwise."""
    if len(token) > _MAX_CREDENTIAL:
        raise AuthenticationError("token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError("token is not a well-formed JWT") from None
    if header.get("alg") != ALGORITHM:
        raise AuthenticationError(f"token algorithm {str(header.get('alg'))[:16]!r} is not EdDSA")
    if typ_header is not None and header.get("typ") != typ_header:
        raise AuthenticationError(f"token type is not {typ_header}")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise AuthenticationError("token is signed by a key this bundle does not know")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": list(required)},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationError("token is not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise AuthenticationError(f"token audience is not {audience}") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationError(f"token issuer is not {issuer}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationError(f"token has no {exc.claim} claim") from None
    except jwt.PyJWTError:
        raise AuthenticationError("token signature or claims are invalid") from None
    return claims


class Authenticator:
    """Bound to one bundle: its organisation, JWKS and API-key hashes."""

    def __init__(
        self,
        kaizen: Mapping[str, Any],
        *,
        issuer: str,
        audience: str,
        cache_size: int = _CACHE_SIZE,
        mcp_resource: str | None = None,
        oauth_issuer: str | None = None,
    ) -> None:
        self.organization: str = kaizen["organization"]
        self.keys = signing_keys(kaizen.get("jwks"))
        api_keys = kaizen.get("api_keys")
        self._api_keys: Mapping[str, Any] = api_keys if isinstance(api_keys, Mapping) else {}
        # By name, for an AuthZEN subject of type apikey (authzen): the key's own roles and
        # scopes, as if it had called.
        self._api_key_names = {
            entry["name"]: entry
            for entry in self._api_keys.values()
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
        }
        revoked = kaizen.get("revoked_sessions")
        self._revoked_sessions = frozenset(
            sid for sid in (revoked if isinstance(revoked, list) else []) if isinstance(sid, str)
        )
        self._issuer = issuer
        self._audience = audience
        # The gateway's canonical MCP URL (RFC 8707 resource): an OAuth token is accepted
        # here only when its `aud` is exactly this, and its `iss` this organisation's issuer.
        self.mcp_resource = mcp_resource
        self._oauth_issuer = (
            f"{oauth_issuer.rstrip('/')}/oauth/{self.organization}" if oauth_issuer else None
        )
        # Verified tokens by value (with their expiry): a signature check once per token.
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0  # token-cache lookups, read by metrics.Observer off the check path
        self.misses = 0

    def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """The decision-input principal for an `Authorization` header value."""
        if not authorization:
            raise AuthenticationError("no credential: send Authorization: Bearer <token>")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationError("Authorization must be 'Bearer <access token or API key>'")
        if credential.startswith(API_KEY_PREFIX):
            return self._api_key(credential)
        cached = self._cache.get(credential)
        if cached is not None and cached[0] > time.time():
            self._cache.move_to_end(credential)
            self.hits += 1
            return dict(cached[1])
        self.misses += 1
        if _header_typ(credential) == OAUTH_TOKEN_TYP:
            principal = self._oauth(credential)
            claims: Mapping[str, Any] = {"exp": principal["attributes"].pop("exp")}
        else:
            claims = verify_eddsa(
                credential,
                self.keys,
                audience=self._audience,
                issuer=self._issuer,
                required=("exp", "iat", "sub"),
            )
            principal = self._user(claims)
        self._cache[credential] = (float(claims["exp"]) + LEEWAY_SECONDS, principal)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return dict(principal)

    def _api_key(self, credential: str) -> dict[str, Any]:
        if len(credential) > _MAX_CREDENTIAL:
            raise AuthenticationError("API key is too long")
        entry = self._api_keys.get(hashlib.sha256(credential.encode()).hexdigest())
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise AuthenticationError("API key is unknown, revoked or expired")
        return self._key_principal(entry)

    def api_key_named(self, name: str) -> dict[str, Any]:
        """The principal of this bundle's API key `name` (as `authenticate` would give for
        its secret); AuthenticationError when there is none or it has expired."""
        entry = self._api_key_names.get(name)
        if entry is None:
            raise AuthenticationError(f"API key {name[:64]} is unknown, revoked or expired")
        return self._key_principal(entry)

    def _key_principal(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        # The expiry travels in the bundle: the key stops at its expiry here, with no
        # re-sign needed (no leeway: the control plane refuses it at the same instant).
        expires_at = entry.get("expires_at")
        if expires_at is not None and (
            not isinstance(expires_at, int | float) or time.time() >= expires_at
        ):
            raise AuthenticationError(f"API key {entry['name']} has expired")
        roles, scopes = entry.get("roles"), entry.get("scopes")
        attributes: dict[str, Any] = {}
        if scopes is not None:
            if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
                raise AuthenticationError(f"API key {entry['name']} has unreadable scopes")
            attributes["scopes"] = list(scopes)
        return {
            "id": f"apikey:{entry['name']}",
            "type": "apikey",
            "organization": self.organization,
            "roles": [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [],
            "teams": [],
            "attributes": attributes,
        }

    def _oauth(self, credential: str) -> dict[str, Any]:
        """An MCP client's token: only for this gateway's MCP resource (no passthrough)."""
        if self.mcp_resource is None or self._oauth_issuer is None:
            raise AuthenticationError(
                "OAuth tokens are not accepted here: this gateway has no MCP resource URL"
            )
        claims = verify_eddsa(
            credential,
            self.keys,
            audience=self.mcp_resource,
            issuer=self._oauth_issuer,
            typ_header=OAUTH_TOKEN_TYP,
            required=("exp", "iat", "sub", "aud", "client_id"),
        )
        if claims.get("aud") != self.mcp_resource:  # a list naming us among others: no
            raise AuthenticationError(f"token audience is not {self.mcp_resource}")
        client_id, scope = claims.get("client_id"), claims.get("scope", "")
        if not isinstance(client_id, str) or not isinstance(scope, str):
            raise AuthenticationError("token client_id and scope must be strings")
        if not scope.split():
            raise AuthenticationError("token grants no scope")
        principal = self._user({**claims, "typ": "access"})
        principal["attributes"].update(
            oauth_client=client_id, scopes=scope.split(), exp=claims["exp"]
        )
        return principal

    def _user(self, claims: Mapping[str, Any]) -> dict[str, Any]:
        if claims.get("typ") != "access":
            raise AuthenticationError("token is not an access token")
        if claims.get("org") != self.organization:
            raise AuthenticationError("token belongs to another organization")
        sid = claims.get("sid")
        if sid is not None and not isinstance(sid, str):
            raise AuthenticationError("access token sid claim must be a string")
        if sid in self._revoked_sessions:
            raise AuthenticationError("session has been revoked; log in again")
        email, role, teams = claims.get("email"), claims.get("role"), claims.get("teams", [])
        if not isinstance(email, str) or not email:
            raise AuthenticationError("access token has no email claim")
        if not isinstance(role, str):
            raise AuthenticationError("access token has no role claim")
        if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
            raise AuthenticationError("access token teams claim must be a list of names")
        return {
            "id": f"user:{email}",
            "type": "user",
            "organization": self.organization,
            "roles": [role] if role else [],
            "teams": list(teams),
            "attributes": {"user_id": str(claims.get("sub"))},
        }


def _header_typ(token: str) -> object:
    try:
        return jwt.get_unverified_header(token).get("typ")
    except jwt.PyJWTError:
        return None  # verify_eddsa says what is wrong with it


# What an API-key scope (`collection:action`, control_plane/services/roles.py) calls each
# kind of resource the sidecar decides on.
SCOPE_COLLECTIONS = {"agent": "agents", "pipeline": "pipelines", "mcp": "mcp"}


def resource_metadata_url(mcp_resource: str) -> str:
    """RFC 9728 §3.1: the metadata of `https://host/mcp` is at
    `https://host/.well-known/oauth-protected-resource/mcp`."""
    scheme, _, rest = mcp_resource.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}/.well-known/oauth-protected-resource{slash}{path}"


def scope_needed(action: str, resource_type: str) -> str:
    """The scope that names this call (what a 403 `insufficient_scope` asks for)."""
    return f"{SCOPE_COLLECTIONS.get(resource_type, resource_type)}:{action}"


def scope_refusal(principal: Mapping[str, Any], action: str, resource_type: str) -> str | None:
    """Why an API key's scopes exclude this call, or None (no scopes: the role decides).

    Scopes only narrow a key's role, exactly as on the control plane: `agents:invoke`,
    `pipelines:run`, `mcp:connect` / `mcp:list`, `*` for either part."""
    attributes = principal.get("attributes")
    scopes = attributes.get("scopes") if isinstance(attributes, Mapping) else None
    if not scopes:
        return None
    collection = SCOPE_COLLECTIONS.get(resource_type, resource_type)
    for scope in scopes:
        granted_collection, _, granted_action = str(scope).partition(":")
        if fnmatchcase(collection, granted_collection) and fnmatchcase(
            action, granted_action or "*"
        ):
            return None
    return (
        f"API key scopes {sorted(scopes)} do not include {collection}:{action} "
        f"(the key may not {action} {resource_type} resources)"
    )
