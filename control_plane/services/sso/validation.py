"""Checks on what admins send: 422s naming the field, IdP endpoint URLs."""

from __future__ import annotations

from control_plane.errors import Invalid

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def check_url(value: str | None, field_name: str) -> None:
    """IdP endpoints are HTTPS; plain HTTP only on this machine (local IdPs, tests)."""
    if value is None:
        return
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0] if not rest.startswith("[") else "[::1]"
    if scheme != "https" and host not in LOOPBACK_HOSTS:
        raise Invalid(
            f"{field_name}: must be an https:// URL",
            details=[{"field": field_name, "message": "must be an https:// URL"}],
        )


def invalid(field_name: str, message: str) -> Invalid:
    return Invalid(f"{field_name}: {message}", details=[{"field": field_name, "message": message}])
