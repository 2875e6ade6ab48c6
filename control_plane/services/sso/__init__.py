"""Single sign-on: identity providers per organisation, email-domain routing, just-in-time
provisioning with group mapping, enforced SSO, and the single-use code that hands a finished
SSO login to the UI without putting tokens in a URL.

Modules: `providers` (the providers' configuration and secrets), `routing` (which provider a
login goes to), `enforcement` (SSO settings, refused password logins), `single_use` (values
kept once in the key-value store, the SSO code), `identity` (`ExternalIdentity`),
`validation` (422s on admin input); the protocols in `oidc` and `saml`, both ending in an
`ExternalIdentity` that `provision` turns into a member of the organisation. This package
re-exports the protocol-independent names (`sso.create_provider`, `sso.remember`, …); the
protocol modules are imported by name (`from control_plane.services.sso import oidc`).
"""

from __future__ import annotations

from control_plane.services.sso.enforcement import (
    check_password_login,
    get_settings,
    put_settings,
)
from control_plane.services.sso.identity import (
    ExternalIdentity,
    login_actor,
)
from control_plane.services.sso.providers import (
    OIDC_ISSUERS,
    client_secret_name,
    create_provider,
    delete_provider,
    get_provider,
    list_providers,
    out,
    provider_domains,
    show_provider,
    sp_key_name,
    update_provider,
    urls,
)
from control_plane.services.sso.routing import (
    discover,
    provider_by_id,
    provider_for_login,
)
from control_plane.services.sso.single_use import (
    CODE_TTL,
    STATE_TTL,
    first_sighting,
    issue_code,
    peek,
    redeem_code,
    remember,
    take,
)

__all__ = [
    "CODE_TTL",
    "OIDC_ISSUERS",
    "STATE_TTL",
    "ExternalIdentity",
    "check_password_login",
    "client_secret_name",
    "create_provider",
    "delete_provider",
    "discover",
    "first_sighting",
    "get_provider",
    "get_settings",
    "issue_code",
    "list_providers",
    "login_actor",
    "out",
    "peek",
    "provider_by_id",
    "provider_domains",
    "provider_for_login",
    "put_settings",
    "redeem_code",
    "remember",
    "show_provider",
    "sp_key_name",
    "take",
    "update_provider",
    "urls",
]
