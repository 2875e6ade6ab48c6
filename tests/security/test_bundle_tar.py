"""Hostile archives on the sync path: a few hundred bytes that would make the sidecar
allocate gigabytes while reading the tar, before any signature is checked.

A real sidecar process syncs from a real control-plane process through a man in the middle
that, once the sidecar serves revision 1, answers its bundle downloads with a hostile
archive. The sidecar's address space is capped at its size + 1 GiB first, so an unfixed
reader fails with MemoryError inside the sidecar instead of eating this shared machine.
The sidecar must refuse the archive by name, stay up, and keep serving a genuine revision.
"""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import httpx

from tests.e2e import sidecar_procs as procs
from tests.security import bundle_attacks as attack


def _offer(
    shared_control_plane: procs.ControlPlane, tmp_path: Path, *hostile: bytes
) -> list[dict[str, object]]:
    """Offer each archive in turn to one sidecar; its /status after each."""
    cp = httpx.Client(base_url=shared_control_plane.url, timeout=30)
    acme = attack.tenant(cp, "Acme")
    acme.publish(cp, "first")
    mitm = attack.Interceptor(shared_control_plane.url)
    statuses = []
    with (
        mitm.running(),
        attack.sidecar(tmp_path / "sidecar", mitm.url, acme.credential) as sidecar,
    ):
        attack.wait_for(lambda: sidecar.status()["bundle_revision"] == "1", "revision 1")
        attack.cap_address_space(sidecar.process.pid)
        for index, archive in enumerate(hostile):
            mitm.bundle, mitm.bundle_etag, mitm.first_served = archive, f'"{900 + index}"', None
            if index == 0:
                # The sidecar's long-poll (forwarded) returns revision 2; its next poll is
                # answered with the hostile archive.
                acme.publish(cp, "second")
            attack.wait_for(mitm.polled_after_serving, "the sidecar to finish with the archive")
            assert sidecar.process.poll() is None, procs.output(sidecar.process)
            status = sidecar.status()
            # Still serving a genuine revision (2, unless its poll had not yet left when
            # the man in the middle took over the bundle downloads).
            assert status["bundle_revision"] in ("1", "2"), status
            assert status["bundle_verification_failures"] == index + 1, status
            statuses.append(status)
    cp.close()
    return statuses


def test_sparse_member_bundle_is_refused_before_allocation(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    hostile = attack.sparse_member_bundle()
    assert len(hostile) < 300  # a few hundred bytes that expand to an 8 GiB member
    [status] = _offer(shared_control_plane, tmp_path, hostile)
    assert "data.json: sparse file members are refused" in str(status["last_verification_error"])


def test_member_declaring_8_gib_is_refused_before_reading(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    hostile = attack.huge_member_bundle()
    assert len(hostile) < 200
    [status] = _offer(shared_control_plane, tmp_path, hostile)
    assert "data.json: members declare more than 67108864 bytes in total" in str(
        status["last_verification_error"]
    )


def test_link_device_and_fifo_members_are_refused(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    kinds = {
        "symbolic link": tarfile.SYMTYPE,
        "hard link": tarfile.LNKTYPE,
        "character device": tarfile.CHRTYPE,
        "block device": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    archives = []
    for kind in kinds.values():
        info = tarfile.TarInfo("/data.json")
        info.type = kind
        info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        archives.append(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024))
    statuses = _offer(shared_control_plane, tmp_path, *archives)
    for kind, status in zip(kinds, statuses, strict=True):
        assert f"data.json: {kind} members are refused" in str(status["last_verification_error"])


def test_gzip_bomb_bundle_is_refused(
    shared_control_plane: procs.ControlPlane, tmp_path: Path
) -> None:
    hostile = attack.gzip_bomb_bundle()
    assert len(hostile) < 128 * 1024  # inflates to 72 MiB
    [status] = _offer(shared_control_plane, tmp_path, hostile)
    assert "larger than 67108864 bytes decompressed" in str(status["last_verification_error"])
