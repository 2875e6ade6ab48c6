from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import tarfile
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from policy.bundles.bundle import build_bundle, load_bundle
from policy.bundles.bundle_hash import file_digest
from policy.bundles.keys import generate_ed25519, public_jwk
from policy.compile.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.documents.policy_set import PolicySet
from policy.engine.decide import DecisionEngine
from policy.errors import BundleError, BundleVerificationError

from .conftest import ORG, decision_input

KID = "kaizen-1"


@pytest.fixture
def built(example_compiled: CompiledPolicy, signing_key: tuple[Any, dict[str, Any]]) -> bytes:
    key, _ = signing_key
    return build_bundle(
        example_compiled, revision=5, signing_key=key, kid=KID, scope=ORG, iat=1_700_000_000
    )


@pytest.fixture
def jwks(signing_key: tuple[Any, dict[str, Any]]) -> dict[str, Any]:
    return signing_key[1]


def read_files(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def write_files(
    files: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if extra:
            extra(tar)
    return gzip.compress(raw.getvalue())


def resign(
    files: dict[str, bytes], key: Any, *, alg: str = "EdDSA", kid: str = KID, scope: str = ORG
) -> dict[str, bytes]:
    """Sign `files` as they are now, the way an attacker holding `key` would."""
    listed = {n: c for n, c in files.items() if n != "/.signatures.json"}
    payload = {
        "files": [
            {"name": n.lstrip("/"), "hash": digest(n.lstrip("/"), c), "algorithm": "SHA-256"}
            for n, c in listed.items()
        ],
        "scope": scope,
        "iat": 1_700_000_000,
        "iss": "test",
    }
    token = jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})
    return {**listed, "/.signatures.json": json.dumps({"signatures": [token]}).encode()}


def digest(name: str, content: bytes) -> str:
    try:
        return file_digest(name, content)
    except RecursionError:  # too deep for us to hash, so it can only be signed blind
        return hashlib.sha256(content).hexdigest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_token(built: bytes, header: dict[str, Any], sign: Callable[[bytes], bytes]) -> bytes:
    files = read_files(built)
    original = json.loads(files["/.signatures.json"])["signatures"][0]
    payload_part = original.split(".")[1]
    signing_input = f"{b64(json.dumps(header).encode())}.{payload_part}".encode()
    token = signing_input.decode() + "." + b64(sign(signing_input))
    files["/.signatures.json"] = json.dumps({"signatures": [token]}).encode()
    return write_files(files)


def rejected(bundle: bytes, jwks: dict[str, Any], **options: Any) -> str:
    options.setdefault("scope", ORG)
    with pytest.raises(BundleVerificationError) as raised:
        load_bundle(bundle, jwks, **options)
    return str(raised.value)


def test_a_built_bundle_verifies_and_drives_an_engine(
    built: bytes, jwks: dict[str, Any], example_compiled: CompiledPolicy
) -> None:
    bundle = load_bundle(built, jwks, scope=ORG, current_revision=4)
    assert (bundle.revision, bundle.revision_number, bundle.key_id, bundle.issuer) == (
        "5",
        5,
        KID,
        "kaizen-studio",
    )
    assert bundle.compiled == example_compiled
    assert bundle.raw == built
    decision = DecisionEngine.from_bundle(bundle).decide(decision_input())
    assert (decision.outcome, decision.bundle_revision, decision.key_id) == ("allow", "5", KID)


def test_the_layout_is_opas(built: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(built))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "/.manifest",
        "/.signatures.json",
        "/data.json",
        "/kaizen/abac/guardrails/policy.rego",
    ]
    assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}
    files = read_files(built)
    manifest = json.loads(files["/.manifest"])
    assert manifest == {
        "revision": "5",
        "roots": ["kaizen"],
        "rego_version": 1,
        "metadata": {"scope": ORG, "organization": ORG},
    }
    (token,) = json.loads(files["/.signatures.json"])["signatures"]
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": KID, "typ": "JWT"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["scope"], payload["iat"], payload["iss"]) == (
        ORG,
        1_700_000_000,
        "kaizen-studio",
    )
    assert [f["name"] for f in payload["files"]] == [
        ".manifest",
        "data.json",
        "kaizen/abac/guardrails/policy.rego",
    ]
    assert {f["algorithm"] for f in payload["files"]} == {"SHA-256"}
    assert payload["files"][1]["hash"] == file_digest("data.json", files["/data.json"])


def test_builds_are_byte_identical_for_the_same_input(
    built: bytes, example_compiled: CompiledPolicy, signing_key: tuple[Any, Any]
) -> None:
    again = build_bundle(
        example_compiled,
        revision=5,
        signing_key=signing_key[0],
        kid=KID,
        scope=ORG,
        iat=1_700_000_000,
    )
    assert again == built
    later = build_bundle(
        example_compiled,
        revision=5,
        signing_key=signing_key[0],
        kid=KID,
        scope=ORG,
        iat=1_700_000_001,
    )
    assert later != built


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: rsa.generate_private_key(65537, 2048),
    ],
)
def test_es256_and_rs256_keys_sign_too(
    example_compiled: CompiledPolicy, make_key: Callable[[], Any]
) -> None:
    key = make_key()
    bundle = build_bundle(example_compiled, revision=1, signing_key=key, kid="k", scope=ORG)
    assert load_bundle(bundle, {"keys": [public_jwk(key, "k")]}, scope=ORG).key_id == "k"


def test_reformatted_json_still_verifies_because_opa_hashes_canonical_json(
    built: bytes, jwks: dict[str, Any]
) -> None:
    files = read_files(built)
    files["/data.json"] = json.dumps(json.loads(files["/data.json"]), indent=4).encode()
    assert load_bundle(write_files(files), jwks, scope=ORG).revision == "5"


@pytest.mark.parametrize(
    "name", ["/kaizen/abac/guardrails/policy.rego", "/data.json", "/.manifest"]
)
def test_one_changed_byte_is_rejected(built: bytes, jwks: dict[str, Any], name: str) -> None:
    files = read_files(built)
    content = bytearray(files[name])
    position = content.index(b"shell") if b"shell" in content else content.index(b"org-1")
    content[position] ^= 0x01
    files[name] = bytes(content)
    assert rejected(write_files(files), jwks) == f"{name[1:]}: digest does not match the signature"


def test_an_unsigned_extra_file_is_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    files = read_files(built) | {"/kaizen/abac/evil/policy.rego": b"package kaizen.abac.evil\n"}
    assert (
        rejected(write_files(files), jwks)
        == "kaizen/abac/evil/policy.rego: in the bundle but not covered by the signature"
    )


def test_a_missing_signed_file_is_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    files = read_files(built)
    del files["/kaizen/abac/guardrails/policy.rego"]
    assert (
        rejected(write_files(files), jwks)
        == "kaizen/abac/guardrails/policy.rego: signed but missing from the bundle"
    )


def test_unknown_kid_and_wrong_key_are_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    other = {"keys": [dict(jwks["keys"][0], kid="someone-else")]}
    assert (
        rejected(built, other) == "signing key 'kaizen-1' is unknown (not exactly one in the JWKS)"
    )
    impostor = {"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()), KID)]}
    assert (
        rejected(built, impostor)
        == "signature algorithm 'EdDSA' does not match key 'kaizen-1' (ES256)"
    )
    _, same_kid_other_key = generate_ed25519(KID)
    assert rejected(built, same_kid_other_key) == "bad signature: Signature verification failed"
    assert "ambiguous" in rejected(built, {"keys": jwks["keys"] * 2})


def test_wrong_scope_and_stale_revisions_are_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    assert (
        rejected(built, jwks, scope="org-2")
        == "bundle scope 'org-1' does not match expected scope 'org-2'"
    )
    assert (
        rejected(built, jwks, current_revision=5)
        == "revision 5 is not newer than the current revision 5"
    )
    assert (
        rejected(built, jwks, current_revision=9)
        == "revision 5 is not newer than the current revision 9"
    )


def test_alg_none_is_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    forged = forged_token(built, {"alg": "none", "kid": KID}, lambda _: b"")
    assert (
        rejected(forged, jwks) == "signature algorithm 'none' does not match key 'kaizen-1' (EdDSA)"
    )


def test_hs256_keyed_with_the_public_key_is_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    public = jwks["keys"][0]
    for secret in (json.dumps(public).encode(), base64.urlsafe_b64decode(public["x"] + "==")):
        forged = forged_token(
            built,
            {"alg": "HS256", "kid": KID},
            lambda data, s=secret: hmac.new(s, data, hashlib.sha256).digest(),
        )
        assert (
            rejected(forged, jwks)
            == "signature algorithm 'HS256' does not match key 'kaizen-1' (EdDSA)"
        )
    symmetric = {"keys": [{"kty": "oct", "kid": KID, "k": b64(b"secret")}]}
    assert "cannot verify" in rejected(built, symmetric)


def test_exactly_one_signature(built: bytes, jwks: dict[str, Any]) -> None:
    files = read_files(built)
    (token,) = json.loads(files["/.signatures.json"])["signatures"]
    for signatures, found in (([token, token], 2), ([], 0)):
        files["/.signatures.json"] = json.dumps({"signatures": signatures}).encode()
        assert (
            rejected(write_files(files), jwks)
            == f".signatures.json must hold exactly one JWS, found {found}"
        )
    del files["/.signatures.json"]
    assert rejected(write_files(files), jwks) == "bundle is not signed: no .signatures.json"


@pytest.mark.parametrize(
    "name", ["/../etc/passwd.rego", "kaizen/../../x.rego", "/kaizen//x.rego", "kaizen\\abac.rego"]
)
def test_path_traversal_names_are_rejected(built: bytes, jwks: dict[str, Any], name: str) -> None:
    files = read_files(built) | {name: b"package kaizen.abac.x\n"}
    assert "unsafe file name" in rejected(write_files(files), jwks)


def test_files_outside_the_layout_and_links_are_rejected(
    built: bytes, jwks: dict[str, Any]
) -> None:
    assert "unexpected file '/kaizen/run.sh'" in rejected(
        write_files(read_files(built) | {"/kaizen/run.sh": b"x"}), jwks
    )

    def add_link(tar: tarfile.TarFile) -> None:
        link = tarfile.TarInfo("/kaizen/abac/link.rego")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)

    assert (
        rejected(write_files(read_files(built), add_link), jwks)
        == "kaizen/abac/link.rego: symbolic link members are refused; "
        "only regular files are allowed"
    )


def test_a_file_signed_by_the_right_key_must_still_be_a_well_formed_bundle(
    built: bytes, signing_key: tuple[Any, dict[str, Any]]
) -> None:
    key, jwks = signing_key
    files = read_files(built)
    files["/data.json"] = b"[" * 100_000 + b"]" * 100_000
    assert "data.json: not valid JSON" in rejected(write_files(resign(files, key)), jwks)
    files["/data.json"] = b'{"something": "else"}'
    assert "data.json is not a Kaizen policy" in rejected(write_files(resign(files, key)), jwks)


def test_oversized_and_non_gzip_bundles_are_rejected(built: bytes, jwks: dict[str, Any]) -> None:
    assert rejected(built, jwks, max_bytes=1000) == "bundle is larger than 1000 bytes decompressed"
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024 + 1), compresslevel=1)
    assert rejected(bomb, jwks) == "bundle is larger than 67108864 bytes decompressed"
    assert rejected(b"not a bundle", jwks).startswith("bundle is not gzip")


def test_revision_must_be_an_integer(
    example_compiled: CompiledPolicy, signing_key: tuple[Any, Any]
) -> None:
    for revision in ("v2", "-1", "01", ""):
        with pytest.raises(BundleError, match="revision must be a non-negative integer"):
            build_bundle(
                example_compiled, revision=revision, signing_key=signing_key[0], kid=KID, scope=ORG
            )


def test_a_policy_without_rego_or_roles_bundles_and_denies_everything(
    signing_key: tuple[Any, dict[str, Any]],
) -> None:
    empty = compile_policy(PolicySet.from_documents([], builtin_roles=False), CompileContext(ORG))
    key, jwks = signing_key
    bundle = load_bundle(
        build_bundle(empty, revision=1, signing_key=key, kid=KID, scope=ORG), jwks, scope=ORG
    )
    assert bundle.compiled.rego_modules == {}
    decision = DecisionEngine.from_bundle(bundle).decide(decision_input())
    assert (decision.outcome, decision.reasons) == (
        "deny",
        ("no role grants invoke on agent:support-bot",),
    )
