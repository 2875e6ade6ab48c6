"""The decision log's files: `<20-digit index>.ndjson` segments, `ack.json` (the persisted
acknowledged position) and the helpers that read them back after a crash."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
ACK = "ack.json"


@dataclass(frozen=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class Batch:
    start: Position
    end: Position
    lines: list[bytes]
    consumed_records: int  # lines shipped plus lines skipped as unreadable
    consumed_bytes: int
    skipped: int


def segment_name(index: int) -> str:
    return f"{index:020d}.ndjson"


def read_ack(path: Path) -> Position:
    try:
        stored = json.loads(path.read_bytes())
        position = Position(int(stored["segment"]), int(stored["offset"]))
    except FileNotFoundError:
        return Position(0, 0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # Without a trustworthy position, resend everything: ingest drops the duplicates.
        logger.warning("decision log %s is unreadable (%s); shipping from the start", path, exc)
        return Position(0, 0)
    if position.segment < 0 or position.offset < 0:
        return Position(0, 0)
    return position


def count_lines(path: Path, start: int) -> int:
    count = 0
    with path.open("rb") as handle:
        handle.seek(start)
        while chunk := handle.read(MiB):
            count += chunk.count(b"\n")
    return count


def end_of_last_line(path: Path, size: int) -> int:
    """The offset just after the last newline (0 when there is none)."""
    with path.open("rb") as handle:
        position = size
        while position > 0:
            step = min(64 * 1024, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            newline = chunk.rfind(b"\n")
            if newline != -1:
                return position + newline + 1
    return 0


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
