"""The sidecar's bundle store: verify, persist as last-known-good, swap, notify.

A bundle is used only after `policy.bundles.bundle.load_bundle` has verified it against the trust
anchors (a pinned JWKS when configured, else the control plane's JWKS), the scope and the
current revision (strictly newer). The last-known-good bundle, the JWKS that verified it and
its scope live together in one file, replaced by an atomic rename, so worker processes
sharing the directory never read a half-written or mismatched pair; a restart verifies
that file again before serving it. Without a pinned JWKS the trust in that file is the
trust of the directory: pin the JWKS (`pinned_jwks`) where the disk is not trusted.

The scope is configuration, or — when none is configured — pinned at first contact and
kept in the last-known-good file: once a store has a scope it never takes another
(`pin_scope` refuses). `min_revision` / `not_before` (Unix seconds) are a floor every
bundle must clear, the last-known-good file included, so a fresh runtime with nothing on
disk cannot be rolled back to an old, validly signed bundle.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from policy.bundles.bundle import VerifiedBundle, load_bundle
from policy.bundles.keys import endorsed_jwks
from policy.errors import BundleVerificationError

__all__ = ["LAST_KNOWN_GOOD", "BundleStore", "BundleVerificationError", "ScopeMismatch"]

logger = logging.getLogger(__name__)

LAST_KNOWN_GOOD = "last-known-good.json"
_LOCK = ".lock"
_FORMAT = 1

Subscriber = Callable[[VerifiedBundle], None]


class ScopeMismatch(BundleVerificationError):
    """Something names a scope other than the one this store is configured for or pinned to."""


class BundleStore:
    """The verified bundle in use, its last-known-good copy on disk, and who to tell."""

    def __init__(
        self,
        directory: Path,
        scope: str | None = None,
        pinned_jwks: Mapping[str, Any] | None = None,
        *,
        min_revision: int | None = None,
        not_before: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.scope = scope
        self.pinned_jwks = pinned_jwks
        self.min_revision = min_revision
        self.not_before = not_before
        self._fetched_jwks: Mapping[str, Any] | None = None
        self._current: VerifiedBundle | None = None
        self._subscribers: list[Subscriber] = []
        self._swap = threading.Lock()
        self.subscriber_errors = 0
        self.unendorsed: list[str] = []  # kids of the last JWKS answer not trusted

    @property
    def current(self) -> VerifiedBundle | None:
        return self._current

    @property
    def revision(self) -> int | None:
        current = self._current
        return current.revision_number if current is not None else None

    @property
    def jwks(self) -> Mapping[str, Any] | None:
        """The trust anchors bundles are verified against: the pinned JWKS wins."""
        return self.pinned_jwks if self.pinned_jwks is not None else self._fetched_jwks

    @property
    def pinned(self) -> bool:
        return self.pinned_jwks is not None

    def trust(self, jwks: Mapping[str, Any]) -> Mapping[str, Any]:
        """Take the keys of `jwks` (fetched from the control plane) that this store may trust
        and return the trust anchors now in force (the pinned JWKS, if one is pinned).

        On first contact (nothing trusted yet, nothing on disk) every key is taken: trust on
        first use. After that a key is taken only if it is one already trusted or endorsed
        by one (`policy.bundles.keys.endorsed_jwks`): a rotation by the control plane is followed,
        a key slipped in by anyone answering in its name is not (`unendorsed` names it).
        An answer with no acceptable key at all leaves the trust as it was.
        """
        if not isinstance(jwks.get("keys"), list):
            raise BundleVerificationError("the JWKS has no 'keys' list")
        if self.pinned_jwks is not None:
            return self.pinned_jwks
        if self._fetched_jwks is None:
            self._fetched_jwks = {"keys": list(jwks["keys"])}
            self.unendorsed = []
            return self._fetched_jwks
        if self.scope is None:
            raise BundleVerificationError("no bundle scope to check key endorsements against")
        accepted, self.unendorsed = endorsed_jwks(self._fetched_jwks, jwks, scope=self.scope)
        if self.unendorsed:
            logger.error(
                "the control plane offered bundle key(s) %s for scope %s that no trusted key "
                "endorses; not trusting them",
                ", ".join(self.unendorsed),
                self.scope,
            )
        if accepted["keys"]:
            self._fetched_jwks = accepted
        return self._fetched_jwks

    def pin_scope(self, scope: str, source: str) -> None:
        """Adopt `scope` if none is set yet; refuse (ScopeMismatch) one that differs."""
        if self.scope is None:
            self.scope = scope
        elif scope != self.scope:
            raise ScopeMismatch(
                f"{source} names bundle scope {scope!r}, but this runtime is bound to scope "
                f"{self.scope!r} (configured, or pinned at first contact): refused"
            )

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def verify(self, data: bytes, jwks: Mapping[str, Any] | None = None) -> VerifiedBundle:
        """Verify without installing; raises BundleVerificationError. Safe in a thread."""
        trust = self.pinned_jwks if self.pinned_jwks is not None else jwks or self._fetched_jwks
        if trust is None:
            raise BundleVerificationError(
                "no trust anchors: fetch the control plane's JWKS or pin one before installing"
            )
        if self.scope is None:
            raise BundleVerificationError("no bundle scope: configure one or discover it first")
        return load_bundle(
            data,
            trust,
            scope=self.scope,
            current_revision=self.revision,
            min_revision=self.min_revision,
            not_before=self.not_before,
        )

    def install(self, data: bytes, jwks: Mapping[str, Any] | None = None) -> VerifiedBundle:
        """Verify, persist as last-known-good, make current and notify subscribers.

        On failure raises BundleVerificationError; the current bundle and its file stay.
        """
        verified = self.verify(data, jwks)
        self.commit(verified, jwks)
        return verified

    def commit(self, verified: VerifiedBundle, jwks: Mapping[str, Any] | None = None) -> None:
        """`persist` then `activate` a bundle that `verify` accepted."""
        self.persist(verified, jwks)
        self.activate(verified, jwks)

    def persist(self, verified: VerifiedBundle, jwks: Mapping[str, Any] | None = None) -> None:
        """Write `verified` with the JWKS that verified it as last-known-good (blocking IO)."""
        used = self.pinned_jwks if self.pinned_jwks is not None else jwks or self._fetched_jwks
        if used is None:
            raise BundleVerificationError("no trust anchors to persist the bundle with")
        self._persist(verified, used)

    def activate(self, verified: VerifiedBundle, jwks: Mapping[str, Any] | None = None) -> None:
        """Make `verified` current (never an older revision) and call every subscriber.

        Subscribers run in the caller's thread (BundleSync: the event loop's); one that
        raises is logged and counted in `subscriber_errors`, and the others still run.
        """
        if self.pinned_jwks is None and jwks is not None:
            self._fetched_jwks = jwks
        self._activate(verified)

    def load_last_known_good(self) -> VerifiedBundle | None:
        """The persisted bundle, verified again, made current; None if absent or refused."""
        path = self.directory / LAST_KNOWN_GOOD
        try:
            stored = json.loads(path.read_bytes())
            scope, jwks, data = _decode(stored)
        except FileNotFoundError:
            logger.info("no last-known-good bundle in %s", self.directory)
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("last-known-good bundle %s is unreadable, not serving it: %s", path, exc)
            return None
        if self.scope is not None and scope != self.scope:
            logger.error(
                "last-known-good bundle %s is for scope %r, not the configured %r; not serving it",
                path,
                scope,
                self.scope,
            )
            return None
        trust = self.pinned_jwks if self.pinned_jwks is not None else jwks
        try:
            verified = load_bundle(
                data, trust, scope=scope, min_revision=self.min_revision, not_before=self.not_before
            )
        except BundleVerificationError as exc:
            logger.error(
                "last-known-good bundle %s failed verification, not serving it: %s", path, exc
            )
            return None
        with self._swap:
            current = self.revision
            if current is not None and verified.revision_number <= current:
                return self._current
            self.scope = scope
            if self.pinned_jwks is None and self._fetched_jwks is None:
                self._fetched_jwks = jwks
        self._activate(verified)
        logger.info(
            "serving last-known-good bundle revision %s (key %s) from %s",
            verified.revision,
            verified.key_id,
            path,
        )
        return verified

    def _activate(self, verified: VerifiedBundle) -> None:
        with self._swap:
            current = self.revision
            if current is not None and verified.revision_number <= current:
                return  # a newer one won a race; never go back
            self._current = verified
        for callback in list(self._subscribers):
            try:
                callback(verified)
            except Exception:
                self.subscriber_errors += 1
                logger.exception(
                    "a bundle subscriber failed on revision %s; it keeps its previous state",
                    verified.revision,
                )

    def _persist(self, verified: VerifiedBundle, jwks: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "format": _FORMAT,
                "scope": verified.scope,
                "revision": verified.revision,
                "key_id": verified.key_id,
                "jwks": jwks,
                "bundle": base64.b64encode(verified.raw).decode("ascii"),
            },
            separators=(",", ":"),
        ).encode()
        target = self.directory / LAST_KNOWN_GOOD
        with self._directory_lock():
            on_disk = _stored_revision(target)
            if (
                on_disk is not None
                and on_disk > verified.revision_number
                and self._verifies(target, jwks)
            ):
                logger.info(
                    "revision %s on disk is newer than %s (another worker); keeping it",
                    on_disk,
                    verified.revision,
                )
                return
            write_atomically(target, body)

    def _verifies(self, path: Path, jwks: Mapping[str, Any]) -> bool:
        try:
            scope, _, data = _decode(json.loads(path.read_bytes()))
            load_bundle(data, jwks, scope=scope)
        except (OSError, ValueError, KeyError, TypeError, BundleVerificationError):
            return False
        return scope == self.scope

    @contextlib.contextmanager
    def _directory_lock(self) -> Iterator[None]:
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def write_atomically(target: Path, body: bytes) -> None:
    """Temp file, fsync, rename over `target`, fsync the directory: all or nothing."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, target)
    directory_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _decode(stored: Any) -> tuple[str, Mapping[str, Any], bytes]:
    if not isinstance(stored, dict) or stored.get("format") != _FORMAT:
        raise ValueError("not a last-known-good file of a known format")
    scope, jwks = stored["scope"], stored["jwks"]
    if not isinstance(scope, str) or not isinstance(jwks, dict):
        raise ValueError("scope or jwks missing")
    return scope, jwks, base64.b64decode(stored["bundle"], validate=True)


def _stored_revision(path: Path) -> int | None:
    try:
        revision = json.loads(path.read_bytes()).get("revision")
        return int(revision) if isinstance(revision, str) and revision.isdigit() else None
    except (OSError, ValueError, AttributeError):
        return None
