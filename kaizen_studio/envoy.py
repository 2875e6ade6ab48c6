"""Envoy for `kaizen-studio up`: the front proxy's config, filled in from the packaged
template, when an `envoy` binary is on PATH (or beside this Python)."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from kaizen_studio.errors import UpError

# Package data (deploy/envoy/envoy.yaml, linked into the package), so an installed wheel has it.
ENVOY_TEMPLATE = resources.files("kaizen_studio") / "data" / "envoy.yaml"


def envoy_config(
    home: Path, *, listen: int, admin: int, sidecar_http: int, sidecar_grpc: int, upstream: int
) -> Path | None:
    """Write `home/envoy.yaml` from the template; the `envoy` binary, or None if there is none."""
    binary = shutil.which("envoy") or (
        str(Path(sys.executable).with_name("envoy"))
        if Path(sys.executable).with_name("envoy").exists()
        else None
    )
    if binary is None:
        return None
    if not ENVOY_TEMPLATE.is_file():
        raise UpError(f"the Envoy template {ENVOY_TEMPLATE} is missing: reinstall kaizen-studio")
    text = ENVOY_TEMPLATE.read_text()
    for name, value in (
        ("LISTEN_PORT", listen),
        ("ADMIN_PORT", admin),
        # Envoy asks the sidecar over HTTP ext_authz (/ext_authz on its HTTP port).
        ("SIDECAR_HTTP_PORT", sidecar_http),
        ("SIDECAR_GRPC_PORT", sidecar_grpc),
        ("UPSTREAM_PORT", upstream),
    ):
        text = text.replace("${" + name + "}", str(value))
    path = home / "envoy.yaml"
    path.write_text(text)
    return Path(binary)
