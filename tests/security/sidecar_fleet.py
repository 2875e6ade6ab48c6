"""Real sidecar processes, each behind its own real Envoy, in front of the echo upstream
(tests/e2e/sidecar_procs.py): a small fleet for the grant and decision-header attacks."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import Keys, make_bundle


@dataclass(frozen=True)
class Fleet:
    keys: Keys
    upstream: int
    directory: Path
    stack: ExitStack

    def sidecar(self, name: str, gateway_token: str, **env: str) -> str:
        """A static-mode sidecar of gateway `gateway_token` behind a new Envoy; its URL."""
        grpc_port, http_port = procs.free_port(), procs.free_port()
        listen, admin = procs.free_port(), procs.free_port()
        self.stack.enter_context(
            procs.running(
                procs.start_sidecar(
                    self.directory / name,
                    grpc_port,
                    http_port,
                    KAIZEN_SIDECAR_BUNDLE=str(self.directory / "bundle.tar.gz"),
                    KAIZEN_SIDECAR_JWKS=str(self.directory / "jwks.json"),
                    KAIZEN_GATEWAY_TOKEN=gateway_token,
                    # Nothing listens there: decision logs wait on disk, decisions go on.
                    KAIZEN_CONTROL_PLANE_URL=f"http://127.0.0.1:{procs.free_port()}",
                    **env,
                )
            )
        )
        config = procs.envoy_config(listen, admin, grpc_port, self.upstream, sidecar_http=http_port)
        self.stack.enter_context(procs.running(procs.start_envoy(config, self.directory, admin)))
        return f"http://127.0.0.1:{listen}"


def fleet(directory: Path, keys: Keys, stack: ExitStack) -> Fleet:
    """The echo upstream and a signed bundle every sidecar of the fleet serves."""
    (directory / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (directory / "jwks.json").write_text(json.dumps(keys.jwks))
    upstream = procs.free_port()
    stack.enter_context(procs.running(procs.start_helper("upstream", upstream)))
    return Fleet(keys, upstream, directory, stack)
