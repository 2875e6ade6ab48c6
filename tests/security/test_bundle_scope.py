"""One organisation's bundles never reach another organisation's sidecar or gateway.

Two tenants on a real control-plane process (PostgreSQL + Redis): Acme, the victim, and
Mallory, the attacker. Mallory sits on Acme's sync path (a man in the middle: a plain-http
network or a proxy it controls) and tries to make Acme's real sidecar or gateway process
enforce a policy of Mallory's choosing:

- with a bundle for Acme's scope signed by Mallory's key (a key of its own organisation
  that it holds, e.g. a leaked one) — refused: Acme's runtime trusts only Acme's keys;
- by answering `GET /api/v1/gateways/self` with Mallory's scope and presenting Mallory's
  own gateway credential upstream, so the control plane hands out Mallory's genuine bundle
  and keys — refused: the runtime is bound to the scope it was configured with;
- against a gateway that pinned Acme's JWKS, with Mallory's keys in place of Acme's;
- against a sidecar that took Acme's keys on first contact, by adding a key of its own to
  the JWKS answer later (only keys endorsed by a trusted key are ever added).

Each test ends by taking the man in the middle away and watching the same runtime load
Acme's own bundle, so the refusal is the protection at work, not a broken path.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from policy.bundles.keys import generate_ed25519, load_private_key
from tests.e2e import sidecar_procs as procs
from tests.security import bundle_attacks as attack


def _tenants(
    shared_control_plane: procs.ControlPlane,
) -> tuple[httpx.Client, attack.Tenant, attack.Tenant]:
    cp = httpx.Client(base_url=shared_control_plane.url, timeout=30)
    acme, mallory = attack.tenant(cp, "Acme"), attack.tenant(cp, "Mallory")
    acme.publish(cp, "acme policy")
    mallory.publish(cp, "mallory policy")
    return cp, acme, mallory


def test_bundle_signed_with_another_organisations_key_is_refused(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp, acme, mallory = _tenants(shared_control_plane)
    kid, key = attack.signing_key_of(shared_control_plane, mallory.bundle(cp))
    forged = attack.forged_bundle(
        scope=acme.organization_id,
        kid=kid,
        key=key,
        revision=99,
        grant_to=mallory.email,
        token_jwks=cp.get("/.well-known/jwks.json").json(),
    )
    mitm = attack.Interceptor(shared_control_plane.url)
    with (
        mitm.running(),
        attack.sidecar(
            tmp_path / "sidecar", mitm.url, acme.credential, KAIZEN_SCOPE=acme.organization_id
        ) as sidecar,
    ):
        attack.wait_for(lambda: sidecar.status()["bundle_revision"] == "1", "Acme's revision 1")
        mitm.bundle = forged
        acme.publish(cp, "wakes the long-poll")
        attack.wait_for(mitm.polled_after_serving, "the sidecar to finish with the forgery")
        status = sidecar.status()
        assert status["bundle_revision"] in ("1", "2"), status  # never 99
        assert status["scope"] == acme.organization_id
        assert status["bundle_verification_failures"] >= 1, status
        assert f"signing key {kid!r} is unknown" in str(status["last_verification_error"])
    cp.close()


def test_control_plane_answer_naming_another_scope_is_refused(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp, acme, mallory = _tenants(shared_control_plane)
    mitm = attack.Interceptor(
        shared_control_plane.url, claim_scope=mallory.organization_id, credential=mallory.credential
    )
    with (
        mitm.running(),
        attack.sidecar(
            tmp_path / "sidecar", mitm.url, acme.credential, KAIZEN_SCOPE=acme.organization_id
        ) as sidecar,
    ):
        attack.wait_for(
            lambda: (
                sidecar.status()["bundle_verification_failures"] >= 1 or sidecar.status()["ready"]
            ),
            "the sidecar to decide on the answer",
        )
        status = sidecar.status()
        assert status["ready"] is False, status  # Mallory's bundle was not installed
        assert status["bound_scope"] == acme.organization_id
        assert f"names bundle scope {mallory.organization_id!r}" in str(
            status["last_verification_error"]
        )
        assert "GET /api/v1/bundles/" not in " ".join(mitm.requests)  # it never asked

        # Without the man in the middle, the same sidecar loads Acme's own bundle.
        mitm.claim_scope = mitm.credential = None
        attack.wait_for(lambda: sidecar.status()["ready"], "Acme's bundle")
        assert sidecar.status()["scope"] == acme.organization_id
    cp.close()


def test_gateway_bound_to_its_scope_refuses_another_organisations_bundle(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp, acme, mallory = _tenants(shared_control_plane)
    mitm = attack.Interceptor(
        shared_control_plane.url, claim_scope=mallory.organization_id, credential=mallory.credential
    )
    with (
        mitm.running(),
        attack.gateway(
            tmp_path / "gateway", mitm.url, acme.credential, KAIZEN_SCOPE=acme.organization_id
        ) as gateway,
    ):
        attack.wait_for(
            lambda: (
                "names bundle scope" in gateway.get("/healthz").text
                or gateway.get("/healthz").status_code == 200
            ),
            "the gateway to decide on the answer",
        )
        health = gateway.get("/healthz")
        assert health.status_code == 503, health.text
        assert f"names bundle scope {mallory.organization_id!r}" in health.json()["reason"]

        mitm.claim_scope = mitm.credential = None
        attack.wait_for(lambda: gateway.get("/healthz").status_code == 200, "Acme's bundle")
        assert gateway.get("/healthz").json()["bundle_revision"] == "1"
    cp.close()


def test_gateway_with_a_pinned_jwks_refuses_keys_swapped_in_transit(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    cp, acme, mallory = _tenants(shared_control_plane)
    pinned = tmp_path / "acme-jwks.json"
    pinned.write_text(cp.get(f"/api/v1/bundles/{acme.organization_id}/jwks.json").text)
    kid, key = attack.signing_key_of(shared_control_plane, mallory.bundle(cp))
    mitm = attack.Interceptor(
        shared_control_plane.url,
        bundle=attack.forged_bundle(
            scope=acme.organization_id,
            kid=kid,
            key=key,
            revision=99,
            grant_to=mallory.email,
            token_jwks=cp.get("/.well-known/jwks.json").json(),
        ),
        # Mallory's keys where Acme's should be: an unpinned runtime would take them.
        jwks=cp.get(f"/api/v1/bundles/{mallory.organization_id}/jwks.json").json(),
    )
    with (
        mitm.running(),
        attack.gateway(
            tmp_path / "gateway",
            mitm.url,
            acme.credential,
            KAIZEN_SCOPE=acme.organization_id,
            KAIZEN_GATEWAY_JWKS=str(pinned),
        ) as gateway,
    ):
        attack.wait_for(mitm.polled_after_serving, "the gateway to finish with the forgery")
        health = gateway.get("/healthz")
        assert health.status_code == 503, health.text
        assert f"signing key {kid!r} is unknown" in health.json()["reason"]
        assert json.loads(pinned.read_text())["keys"]  # Acme's keys, pinned

        mitm.bundle = mitm.jwks = None
        attack.wait_for(lambda: gateway.get("/healthz").status_code == 200, "Acme's bundle")
        assert gateway.get("/healthz").json()["bundle_revision"] == "1"
    cp.close()


def test_rotating_one_organisations_key_leaves_the_others_and_its_sidecar_follows(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    """`keys rotate --organization`: a compromised organisation key is replaced without
    touching any other organisation, and that organisation's sidecar (trusting only its
    scope's keys) follows the re-signed bundle on its own."""
    cp, acme, mallory = _tenants(shared_control_plane)

    def jwks(tenant: attack.Tenant) -> set[str]:
        keys = cp.get(f"/api/v1/bundles/{tenant.organization_id}/jwks.json").json()["keys"]
        return {key["kid"] for key in keys}

    acme_before, mallory_before = jwks(acme), jwks(mallory)
    assert len(acme_before) == 1
    assert acme_before.isdisjoint(mallory_before)

    def rotate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(procs.BIN / "kaizen-studio"), "keys", "rotate", *args],
            env=shared_control_plane.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with attack.sidecar(
        tmp_path / "sidecar",
        shared_control_plane.url,
        acme.credential,
        KAIZEN_SCOPE=acme.organization_id,
    ) as sidecar:
        attack.wait_for(lambda: sidecar.status()["bundle_revision"] == "1", "revision 1")
        rotated = rotate("--organization", acme.organization_id)
        assert rotated.returncode == 0, rotated.stderr
        [new_kid] = jwks(acme) - acme_before
        assert jwks(mallory) == mallory_before
        attack.wait_for(lambda: sidecar.status()["key_id"] == new_kid, "the re-signed bundle")
        assert sidecar.status()["bundle_revision"] == "2"

    refused = rotate("--organization", "not-an-organisation")
    assert refused.returncode == 2
    assert "--organization 'not-an-organisation' is not an organisation id" in refused.stderr
    cp.close()


def test_key_slipped_into_the_jwks_after_first_contact_is_refused(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    """A sidecar that took its scope's keys on first contact (nothing pinned by
    configuration) keeps them: later, a man in the middle adds a key of its own to the JWKS
    answer and signs a bundle with it. A rotation is only followed when a trusted key
    endorses the new one, so this key is refused."""
    cp = httpx.Client(base_url=shared_control_plane.url, timeout=30)
    acme = attack.tenant(cp, "Acme")
    acme.publish(cp, "acme policy")
    pem, mallory_jwks = generate_ed25519("mallory-1")
    genuine = cp.get(f"/api/v1/bundles/{acme.organization_id}/jwks.json").json()
    mitm = attack.Interceptor(shared_control_plane.url)
    with (
        mitm.running(),
        attack.sidecar(tmp_path / "sidecar", mitm.url, acme.credential) as sidecar,
    ):
        attack.wait_for(lambda: sidecar.status()["bundle_revision"] == "1", "revision 1")
        mitm.jwks = {**genuine, "keys": [*genuine["keys"], *mallory_jwks["keys"]]}
        mitm.bundle = attack.forged_bundle(
            scope=acme.organization_id,
            kid="mallory-1",
            key=load_private_key(pem),
            revision=99,
            grant_to="mallory@mallory.example.com",
            token_jwks=cp.get("/.well-known/jwks.json").json(),
        )
        acme.publish(cp, "wakes the long-poll")
        attack.wait_for(mitm.polled_after_serving, "the sidecar to finish with the forgery")
        status = sidecar.status()
        assert status["bundle_revision"] in ("1", "2"), status  # never 99
        error = str(status["last_verification_error"])
        assert "signing key 'mallory-1' is unknown" in error
        assert "offered key(s) mallory-1 that no key this runtime trusts endorses" in error

        # The genuine control plane again: the sidecar follows Acme's own next revision.
        mitm.bundle = mitm.jwks = None
        acme.publish(cp, "after the attack")
        attack.wait_for(lambda: sidecar.status()["bundle_revision"] == "3", "revision 3")
    cp.close()
