"""Signed OPA-format bundles: build (deterministic tar.gz + one JWS) and verify.

Layout: `/.manifest`, `/data.json`, `/kaizen/abac/<name>/policy.rego`,
`/.signatures.json` = {"signatures": ["<JWS>"]}; the JWS payload lists every other file
with its OPA-style SHA-256 (bundle_hash.py) plus `scope`, `iat` and `iss`, and its header
names the key (`kid`). A stock OPA configured with the same public key loads it.
"""

from __future__ import annotations

import gzip
import hmac
import io
import json
import tarfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from policy.bundles.bundle_hash import ALGORITHM, file_digest
from policy.bundles.keys import PrivateKey, SigningKeyError, jwk_algorithm, signing_algorithm
from policy.compile.compiler import CompiledPolicy, CompileError, canonical_json
from policy.errors import BundleError, BundleVerificationError

MANIFEST = ".manifest"
DATA = "data.json"
SIGNATURES = ".signatures.json"
ROOT = "kaizen"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # decompressed: a gzip bomb stops here
MAX_FILES = 10_000
CLOCK_SKEW_SECONDS = 300
# Only these member types are read; everything else (links, devices, fifos, contiguous
# files, GNU/PAX sparse files) is refused before any member is read.
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_KINDS = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}


@dataclass(frozen=True)
class VerifiedBundle:
    revision: str
    key_id: str
    scope: str
    issuer: str | None
    issued_at: int
    manifest: Mapping[str, Any]
    compiled: CompiledPolicy
    raw: bytes = field(repr=False)  # the bundle as received, to persist as last-known-good

    @property
    def revision_number(self) -> int:
        return int(self.revision)


def build_bundle(
    compiled: CompiledPolicy,
    *,
    revision: int | str,
    signing_key: PrivateKey,
    kid: str,
    scope: str,
    iss: str = "kaizen-studio",
    iat: int | None = None,
) -> bytes:
    """The signed bundle as gzipped tar bytes; same inputs (and `iat`) → same bytes."""
    revision_text = _revision(revision)
    if not kid:
        raise BundleError("a signing key id (kid) is required")
    manifest = {
        "revision": revision_text,
        "roots": [ROOT],
        "rego_version": 1,
        "metadata": {"scope": scope, "organization": compiled.organization_id},
    }
    files: dict[str, bytes] = {
        MANIFEST: canonical_json(manifest),
        DATA: compiled.data_json(),
        **{path: text.encode() for path, text in compiled.rego_modules.items()},
    }
    payload = {
        "files": [
            {"name": name, "hash": file_digest(name, content), "algorithm": ALGORITHM}
            for name, content in sorted(files.items())
        ],
        "scope": scope,
        "iat": int(time.time()) if iat is None else iat,
        "iss": iss,
    }
    try:
        algorithm = signing_algorithm(signing_key)
    except SigningKeyError as exc:
        raise BundleError(str(exc)) from None
    token = jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": kid})
    files[SIGNATURES] = canonical_json({"signatures": [token]})
    return _tar_gz(files)


def _revision(revision: int | str) -> str:
    text = str(revision)
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise BundleError(f"revision must be a non-negative integer, got {revision!r}")
    return text


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo("/" + name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


def load_bundle(
    data: bytes,
    jwks: Mapping[str, Any],
    *,
    scope: str,
    current_revision: int | None = None,
    min_revision: int | None = None,
    not_before: int | None = None,
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> VerifiedBundle:
    """Verify a bundle completely before anything in it is used.

    Raises BundleVerificationError for anything short of: one signature by a known key
    with the algorithm its type demands, the expected scope, exactly the signed files with
    matching digests, safe file names, a revision newer than `current_revision` and at
    least `min_revision`, signed (`iat`) at or after `not_before` (Unix seconds). The last
    two are the floor a fresh sidecar with nothing on disk applies to a replayed old bundle.
    """
    files = _read_tar(_gunzip(data, max_bytes), max_bytes)
    token = _single_signature(files.pop(SIGNATURES, None))
    header, payload = _verify_token(token, jwks)
    if payload.get("scope") != scope:
        raise BundleVerificationError(
            f"bundle scope {payload.get('scope')!r} does not match expected scope {scope!r}"
        )
    _check_files(files, payload.get("files"))
    manifest = _json_file(files, MANIFEST)
    revision = _check_manifest(manifest, scope, current_revision)
    if not isinstance(payload.get("iat"), int):
        raise BundleVerificationError("signature has no integer iat")
    _check_floor(int(revision), payload["iat"], min_revision, not_before)
    modules = {
        name: _utf8(name, content) for name, content in files.items() if name.endswith(".rego")
    }
    try:
        compiled = CompiledPolicy.from_bundle_parts(_json_file(files, DATA), modules)
    except (CompileError, KeyError, TypeError, AttributeError) as exc:
        raise BundleVerificationError(f"data.json is not a Kaizen policy: {exc}") from None
    return VerifiedBundle(
        revision=revision,
        key_id=str(header["kid"]),
        scope=scope,
        issuer=payload.get("iss") if isinstance(payload.get("iss"), str) else None,
        issued_at=payload["iat"],
        manifest=manifest,
        compiled=compiled,
        raw=data,
    )


def claimed_scope(data: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> str | None:
    """The scope a bundle's manifest names, read (with the same safe reader) only to choose
    the scope to verify against; `load_bundle` then makes the signature confirm it."""
    try:
        manifest = _json_file(_read_tar(_gunzip(data, max_bytes), max_bytes), MANIFEST)
    except BundleVerificationError:
        return None
    metadata = manifest.get("metadata")
    scope = metadata.get("scope") if isinstance(metadata, Mapping) else None
    return scope if isinstance(scope, str) and scope else None


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            raw = gz.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise BundleVerificationError(f"bundle is not gzip: {exc}") from None
    if len(raw) > max_bytes:
        raise BundleVerificationError(f"bundle is larger than {max_bytes} bytes decompressed")
    return raw


def _read_tar(raw: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, bytes]:
    """The bundle's files. Every header is checked (type, name, count, running total of
    declared sizes) before any member is read, and each read is bounded by its size, so a
    small archive declaring huge or sparse members is refused without allocating for them."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = _checked_members(tar, max_bytes)
            files: dict[str, bytes] = {}
            for name, member in members:
                extracted = tar.extractfile(member)
                content = extracted.read(member.size) if extracted is not None else b""
                if len(content) != member.size:
                    raise BundleVerificationError(f"{name}: truncated member")
                files[name] = content
    except BundleVerificationError:
        raise
    # tarfile reports malformed pax/GNU headers as ValueError, OverflowError, … not TarError.
    except (tarfile.TarError, ValueError, OverflowError, EOFError, OSError) as exc:
        raise BundleVerificationError(f"bundle is not a valid tar archive: {exc}") from None
    return files


def _checked_members(tar: tarfile.TarFile, max_bytes: int) -> list[tuple[str, tarfile.TarInfo]]:
    members: list[tuple[str, tarfile.TarInfo]] = []
    seen: set[str] = set()
    count = total = 0
    # next() only parses headers: on a seekable archive it skips member data by seeking.
    while (member := tar.next()) is not None:
        count += 1
        if count > MAX_FILES:
            raise BundleVerificationError(f"more than {MAX_FILES} members")
        if member.type == tarfile.DIRTYPE:
            continue
        name = _safe_name(member.name)
        if member.issparse() or member.type not in _REGULAR:
            kind = "sparse file" if member.issparse() else _KINDS.get(member.type, "special")
            raise BundleVerificationError(
                f"{name}: {kind} members are refused; only regular files are allowed"
            )
        if member.size < 0:
            raise BundleVerificationError(f"{name}: negative size")
        total += member.size
        if total > max_bytes:
            raise BundleVerificationError(
                f"{name}: members declare more than {max_bytes} bytes in total"
            )
        if name in seen:
            raise BundleVerificationError(f"{name}: appears twice")
        seen.add(name)
        members.append((name, member))
    return members


def _safe_name(name: str) -> str:
    stripped = name[1:] if name.startswith("/") else name
    parts = stripped.split("/")
    if (
        not stripped
        or "\\" in stripped
        or "\x00" in stripped
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise BundleVerificationError(f"unsafe file name {name!r} in bundle")
    if stripped not in (MANIFEST, DATA, SIGNATURES) and not (
        stripped.startswith(ROOT + "/") and stripped.endswith(".rego")
    ):
        raise BundleVerificationError(f"unexpected file {name!r} in bundle")
    return stripped


def _single_signature(content: bytes | None) -> str:
    if content is None:
        raise BundleVerificationError("bundle is not signed: no .signatures.json")
    try:
        signatures = json.loads(content).get("signatures")
    except (ValueError, AttributeError):
        raise BundleVerificationError(".signatures.json is not a JSON object") from None
    if not isinstance(signatures, list) or len(signatures) != 1:
        count = len(signatures) if isinstance(signatures, list) else 0
        raise BundleVerificationError(f".signatures.json must hold exactly one JWS, found {count}")
    if not isinstance(signatures[0], str):
        raise BundleVerificationError(".signatures.json: the signature is not a string")
    return signatures[0]


def _verify_token(token: str, jwks: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise BundleVerificationError(f"malformed signature: {exc}") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise BundleVerificationError("signature header has no kid")
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    matching = [k for k in keys or [] if isinstance(k, Mapping) and k.get("kid") == kid]
    if len(matching) != 1:
        problem = "unknown" if not matching else "ambiguous"
        raise BundleVerificationError(
            f"signing key {kid!r} is {problem} (not exactly one in the JWKS)"
        )
    try:
        algorithm = jwk_algorithm(matching[0])
        public_key = jwt.PyJWK(dict(matching[0]), algorithm=algorithm).key
    except (SigningKeyError, jwt.PyJWTError, ValueError, TypeError) as exc:
        raise BundleVerificationError(f"key {kid!r} cannot verify: {exc}") from None
    if header.get("alg") != algorithm:
        raise BundleVerificationError(
            f"signature algorithm {header.get('alg')!r} does not match key {kid!r} ({algorithm})"
        )
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=[algorithm],
            options={"require": ["iat"], "verify_aud": False},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.PyJWTError as exc:
        raise BundleVerificationError(f"bad signature: {exc}") from None
    return header, payload


def _check_files(files: Mapping[str, bytes], signed: object) -> None:
    if not isinstance(signed, list):
        raise BundleVerificationError("signature payload has no files list")
    expected: dict[str, str] = {}
    for entry in signed:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BundleVerificationError("signature payload has a malformed file entry")
        if entry.get("algorithm") != ALGORITHM or not isinstance(entry.get("hash"), str):
            raise BundleVerificationError(f"{entry['name']}: only {ALGORITHM} digests are accepted")
        name = entry["name"].removeprefix("/")
        if name in expected:
            raise BundleVerificationError(f"{name}: listed twice in the signature")
        expected[name] = entry["hash"]
    missing = sorted(set(expected) - set(files))
    if missing:
        raise BundleVerificationError(f"{missing[0]}: signed but missing from the bundle")
    extra = sorted(set(files) - set(expected))
    if extra:
        raise BundleVerificationError(f"{extra[0]}: in the bundle but not covered by the signature")
    for name, content in sorted(files.items()):
        try:
            digest = file_digest(name, content)
        except (ValueError, RecursionError) as exc:
            raise BundleVerificationError(f"{name}: not valid JSON: {exc}") from None
        if not hmac.compare_digest(digest, expected[name].lower()):
            raise BundleVerificationError(f"{name}: digest does not match the signature")


def _check_manifest(manifest: Mapping[str, Any], scope: str, current_revision: int | None) -> str:
    revision = manifest.get("revision")
    if not isinstance(revision, str) or not revision.isascii() or not revision.isdigit():
        raise BundleVerificationError(f"manifest revision {revision!r} is not an integer string")
    if ROOT not in (manifest.get("roots") or []):
        raise BundleVerificationError(f"manifest roots must include {ROOT!r}")
    metadata = manifest.get("metadata")
    if not isinstance(metadata, Mapping) or metadata.get("scope") != scope:
        raise BundleVerificationError("manifest metadata.scope does not match the expected scope")
    if current_revision is not None and int(revision) <= current_revision:
        raise BundleVerificationError(
            f"revision {revision} is not newer than the current revision {current_revision}"
        )
    return revision


def _check_floor(
    revision: int, issued_at: int, min_revision: int | None, not_before: int | None
) -> None:
    if min_revision is not None and revision < min_revision:
        raise BundleVerificationError(
            f"revision {revision} is older than the minimum revision {min_revision} this "
            "runtime accepts (KAIZEN_BUNDLE_MIN_REVISION): a replayed old bundle"
        )
    if not_before is not None and issued_at < not_before:
        raise BundleVerificationError(
            f"bundle signed at {issued_at} (iat) is older than the earliest time this runtime "
            f"accepts, {not_before} (KAIZEN_BUNDLE_NOT_BEFORE): a replayed old bundle"
        )


def _json_file(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    if name not in files:
        raise BundleVerificationError(f"bundle has no {name}")
    try:
        value = json.loads(files[name])
    except (ValueError, RecursionError) as exc:
        raise BundleVerificationError(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BundleVerificationError(f"{name} is not a JSON object")
    return value


def _utf8(name: str, content: bytes) -> str:
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise BundleVerificationError(f"{name} is not UTF-8") from None
