"""BundleStore: verify, persist as last-known-good, reload, refuse what does not verify."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import tarfile
from pathlib import Path
from typing import Any

import pytest

from policy.bundles.bundle import VerifiedBundle
from policy.bundles.bundle_store import LAST_KNOWN_GOOD, BundleStore
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.errors import BundleVerificationError

from .conftest import KID, ORG, BundleFactory


def with_data_json(bundle: bytes, data: dict[str, Any]) -> bytes:
    """The same bundle with data.json replaced and the signature left as it was."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as source,
        tarfile.open(fileobj=out, mode="w") as target,
    ):
        for member in source:
            content = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "/data.json":
                content = json.dumps(data).encode()
                member.size = len(content)
            target.addfile(member, io.BytesIO(content))
    return gzip.compress(out.getvalue())


def stored(directory: Path) -> dict[str, Any]:
    return json.loads((directory / LAST_KNOWN_GOOD).read_bytes())


def test_install_verifies_persists_and_notifies(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    store = BundleStore(tmp_path, scope=ORG)
    seen: list[VerifiedBundle] = []
    store.subscribe(seen.append)

    verified = store.install(make_bundle(3), jwks)

    assert store.current is verified
    assert store.revision == 3
    assert store.jwks == jwks
    assert [b.revision for b in seen] == ["3"]
    on_disk = stored(tmp_path)
    assert (on_disk["scope"], on_disk["revision"], on_disk["jwks"]) == (ORG, "3", jwks)
    assert base64.b64decode(on_disk["bundle"]) == verified.raw
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_restart_serves_last_known_good_without_a_control_plane(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    BundleStore(tmp_path, scope=ORG).install(make_bundle(4), jwks)

    restarted = BundleStore(tmp_path)  # scope and keys come from the file
    seen: list[str] = []
    restarted.subscribe(lambda b: seen.append(b.revision))
    loaded = restarted.load_last_known_good()

    assert loaded is not None
    assert loaded.revision == "4"
    assert restarted.current is loaded
    assert (restarted.scope, restarted.jwks) == (ORG, jwks)
    assert seen == ["4"]


def test_no_last_known_good_is_none(tmp_path: Path) -> None:
    assert BundleStore(tmp_path, scope=ORG).load_last_known_good() is None


@pytest.mark.parametrize("tamper", ["data", "garbage", "truncated"])
def test_tampered_file_on_disk_is_refused_and_not_served(
    tmp_path: Path,
    make_bundle: BundleFactory,
    jwks: dict[str, Any],
    tamper: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle = make_bundle(4)
    BundleStore(tmp_path, scope=ORG).install(bundle, jwks)
    path = tmp_path / LAST_KNOWN_GOOD
    content = stored(tmp_path)
    if tamper == "data":
        evil = {"kaizen": {"organization": ORG, "roles": {"admin": {}}, "bindings": []}}
        content["bundle"] = base64.b64encode(with_data_json(bundle, evil)).decode()
        path.write_text(json.dumps(content))
    elif tamper == "garbage":
        content["bundle"] = base64.b64encode(b"\x1f\x8b not a bundle").decode()
        path.write_text(json.dumps(content))
    else:
        path.write_bytes(path.read_bytes()[:100])

    restarted = BundleStore(tmp_path, scope=ORG)
    with caplog.at_level(logging.ERROR):
        assert restarted.load_last_known_good() is None

    assert restarted.current is None
    assert "not serving it" in caplog.text


def test_last_known_good_of_another_scope_is_refused(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    BundleStore(tmp_path, scope=ORG).install(make_bundle(4), jwks)
    assert BundleStore(tmp_path, scope="org-other").load_last_known_good() is None


def test_wrong_scope_is_refused(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    store = BundleStore(tmp_path, scope=ORG)
    with pytest.raises(BundleVerificationError, match="scope"):
        store.install(make_bundle(1, scope="org-other"), jwks)
    assert store.current is None
    assert not (tmp_path / LAST_KNOWN_GOOD).exists()


@pytest.mark.parametrize("revision", [5, 4])
def test_equal_or_older_revision_is_refused_and_the_old_one_kept(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any], revision: int
) -> None:
    store = BundleStore(tmp_path, scope=ORG)
    seen: list[str] = []
    store.subscribe(lambda b: seen.append(b.revision))
    kept = store.install(make_bundle(5), jwks)
    before = (tmp_path / LAST_KNOWN_GOOD).read_bytes()

    with pytest.raises(BundleVerificationError, match="not newer"):
        store.install(make_bundle(revision), jwks)

    assert store.current is kept
    assert seen == ["5"]
    assert (tmp_path / LAST_KNOWN_GOOD).read_bytes() == before


def test_newer_revision_replaces(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    store = BundleStore(tmp_path, scope=ORG)
    store.install(make_bundle(5), jwks)
    store.install(make_bundle(6))  # the JWKS fetched before is still trusted
    assert store.revision == 6
    assert stored(tmp_path)["revision"] == "6"


def test_unknown_key_is_refused(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    pem, _ = generate_ed25519("rogue")
    store = BundleStore(tmp_path, scope=ORG)
    store.install(make_bundle(1), jwks)
    with pytest.raises(BundleVerificationError, match="unknown"):
        store.install(make_bundle(2, key=load_private_key(pem), kid="rogue"))
    assert store.revision == 1


def test_same_kid_other_key_is_refused(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    pem, _ = generate_ed25519(KID)
    store = BundleStore(tmp_path, scope=ORG)
    with pytest.raises(BundleVerificationError, match="signature"):
        store.install(make_bundle(1, key=load_private_key(pem)), jwks)


def test_no_trust_anchors_is_refused(tmp_path: Path, make_bundle: BundleFactory) -> None:
    with pytest.raises(BundleVerificationError, match="no trust anchors"):
        BundleStore(tmp_path, scope=ORG).install(make_bundle(1))


def test_pinned_jwks_wins_over_the_one_offered(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    pem, rogue_jwks = generate_ed25519("rogue")
    store = BundleStore(tmp_path, scope=ORG, pinned_jwks=jwks)
    # A control plane (or a man in the middle) offering other keys changes nothing.
    with pytest.raises(BundleVerificationError, match="unknown"):
        store.install(make_bundle(1, key=load_private_key(pem), kid="rogue"), rogue_jwks)
    store.install(make_bundle(2), rogue_jwks)
    assert store.revision == 2
    assert store.jwks == jwks


def test_pinned_jwks_is_used_for_the_file_on_disk(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    pem, rogue_jwks = generate_ed25519("rogue")
    # Someone with write access swaps in their own bundle and their own JWKS.
    BundleStore(tmp_path, scope=ORG).install(
        make_bundle(9, key=load_private_key(pem), kid="rogue"), rogue_jwks
    )
    assert BundleStore(tmp_path, scope=ORG).load_last_known_good() is not None  # trust on disk
    assert BundleStore(tmp_path, scope=ORG, pinned_jwks=jwks).load_last_known_good() is None


def test_a_failing_subscriber_does_not_stop_the_others(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    store = BundleStore(tmp_path, scope=ORG)
    seen: list[str] = []

    def broken(_: VerifiedBundle) -> None:
        raise RuntimeError("engine failed to build")

    store.subscribe(broken)
    store.subscribe(lambda b: seen.append(b.revision))
    store.install(make_bundle(1), jwks)
    assert seen == ["1"]
    assert store.subscriber_errors == 1


def test_a_worker_never_moves_the_file_back_to_an_older_revision(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    fast, slow = BundleStore(tmp_path, scope=ORG), BundleStore(tmp_path, scope=ORG)
    fast.install(make_bundle(8), jwks)
    slow.install(make_bundle(7), jwks)  # this worker had not seen 8 yet
    assert slow.revision == 7
    assert stored(tmp_path)["revision"] == "8"
