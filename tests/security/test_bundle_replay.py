"""Rolling a fresh pod back: an old, validly signed bundle replayed to a new sidecar or
gateway that has nothing on disk to compare it with.

The attacker recorded revision 1 of Acme's bundle (a genuine signature by Acme's key) and,
as a man in the middle on the sync path of a freshly started runtime, answers its first
download with it. Revisions 2 and 3 exist on the real control plane. A runtime configured
with `KAIZEN_BUNDLE_MIN_REVISION` / `KAIZEN_BUNDLE_NOT_BEFORE` refuses the replay; once the
man in the middle goes away the same process loads the current revision.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from pathlib import Path

import httpx

from tests.e2e import sidecar_procs as procs
from tests.security import bundle_attacks as attack


def _recorded_then_superseded(
    control_plane: procs.ControlPlane,
) -> tuple[httpx.Client, attack.Tenant, bytes]:
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    acme = attack.tenant(cp, "Acme")
    acme.publish(cp, "revision 1")
    recorded = acme.bundle(cp)
    acme.publish(cp, "revision 2")
    acme.publish(cp, "revision 3")
    return cp, acme, recorded


def _issued_at(bundle: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        member = tar.extractfile("/.signatures.json")
        assert member is not None
        token = json.loads(member.read())["signatures"][0]
    payload = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"])


def test_replayed_old_revision_is_refused_by_a_fresh_sidecar(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp, acme, recorded = _recorded_then_superseded(shared_control_plane)
    mitm = attack.Interceptor(shared_control_plane.url, bundle=recorded, bundle_etag='"1"')
    with (
        mitm.running(),
        attack.sidecar(
            tmp_path / "sidecar",
            mitm.url,
            acme.credential,
            KAIZEN_SCOPE=acme.organization_id,
            KAIZEN_BUNDLE_MIN_REVISION="3",
        ) as sidecar,
    ):
        attack.wait_for(mitm.polled_after_serving, "the sidecar to finish with the replay")
        status = sidecar.status()
        assert status["ready"] is False, status  # revision 1 was not installed
        assert "revision 1 is older than the minimum revision 3" in str(
            status["last_verification_error"]
        )
        mitm.bundle = None
        attack.wait_for(lambda: sidecar.status()["ready"], "the current revision")
        assert sidecar.status()["bundle_revision"] == "3"
    cp.close()


def test_replayed_bundle_signed_before_not_before_is_refused_by_a_fresh_sidecar(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp = httpx.Client(base_url=shared_control_plane.url, timeout=30)
    acme = attack.tenant(cp, "Acme")
    acme.publish(cp, "revision 1")
    recorded = acme.bundle(cp)
    not_before = _issued_at(recorded) + 1
    while time.time() < not_before:  # the next revision must be signed after the cut-off
        time.sleep(0.1)
    acme.publish(cp, "revision 2")
    mitm = attack.Interceptor(shared_control_plane.url, bundle=recorded, bundle_etag='"1"')
    with (
        mitm.running(),
        attack.sidecar(
            tmp_path / "sidecar",
            mitm.url,
            acme.credential,
            KAIZEN_SCOPE=acme.organization_id,
            KAIZEN_BUNDLE_NOT_BEFORE=str(not_before),
        ) as sidecar,
    ):
        attack.wait_for(mitm.polled_after_serving, "the sidecar to finish with the replay")
        status = sidecar.status()
        assert status["ready"] is False, status
        assert f"is older than the earliest time this runtime accepts, {not_before}" in str(
            status["last_verification_error"]
        )
        mitm.bundle = None
        attack.wait_for(lambda: sidecar.status()["ready"], "the current revision")
        assert sidecar.status()["bundle_revision"] == "2"
    cp.close()


def test_replayed_old_revision_is_refused_by_a_fresh_gateway(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp, acme, recorded = _recorded_then_superseded(shared_control_plane)
    mitm = attack.Interceptor(shared_control_plane.url, bundle=recorded, bundle_etag='"1"')
    with (
        mitm.running(),
        attack.gateway(
            tmp_path / "gateway",
            mitm.url,
            acme.credential,
            KAIZEN_SCOPE=acme.organization_id,
            KAIZEN_BUNDLE_MIN_REVISION="3",
        ) as gateway,
    ):
        attack.wait_for(mitm.polled_after_serving, "the gateway to finish with the replay")
        health = gateway.get("/healthz")
        assert health.status_code == 503, health.text
        assert "revision 1 is older than the minimum revision 3" in health.json()["reason"]
        mitm.bundle = None
        attack.wait_for(lambda: gateway.get("/healthz").status_code == 200, "revision 3")
        assert gateway.get("/healthz").json()["bundle_revision"] == "3"
    cp.close()


def test_last_known_good_below_the_minimum_revision_is_not_served(
    control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    """A pod restored from an old disk image (or handed an old state directory) while the
    control plane is unreachable: the floor applies to the bundle on disk as well."""
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    acme = attack.tenant(cp, "Acme")
    acme.publish(cp, "revision 1")
    home = tmp_path / "sidecar"
    with attack.sidecar(home, control_plane.url, acme.credential) as sidecar:
        attack.wait_for(lambda: sidecar.status()["bundle_revision"] == "1", "revision 1")
    acme.publish(cp, "revision 2")
    control_plane.stop()
    with attack.sidecar(
        home, control_plane.url, acme.credential, KAIZEN_BUNDLE_MIN_REVISION="2"
    ) as restarted:
        status = restarted.status()
        assert status["ready"] is False, status  # revision 1 on disk is below the floor
    with attack.sidecar(home, control_plane.url, acme.credential) as unfloored:
        assert unfloored.status()["bundle_revision"] == "1"  # the file itself is fine
    control_plane.start()
    cp.close()
