"""Decision ids (UUIDv7 from a buffered os.urandom) and the decision input's clock text."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta

from policy.engine.decide import new_decision_id
from policy.engine.decision_input import now_text


def test_decision_ids_are_uuid7_unique_and_ordered_by_time() -> None:
    ids = [new_decision_id() for _ in range(5_000)]  # more than one 4 KiB refill
    assert len(set(ids)) == len(ids)
    for text in ids[:50]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    millis = [int(text[:12], 16) for text in ids]
    assert millis == sorted(millis)


def test_a_forked_child_draws_its_own_entropy() -> None:
    new_decision_id()  # the parent's buffer is filled
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, new_decision_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    ours = new_decision_id()
    assert theirs[13:] != ours[13:]  # the random bits differ, not only the time


def test_now_text_is_rfc3339_utc_with_microseconds() -> None:
    before = datetime.now(UTC)
    texts = [now_text() for _ in range(1_000)]
    after = datetime.now(UTC)
    for text in texts:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
        when = datetime.fromisoformat(text)
        assert before - timedelta(microseconds=1) <= when <= after + timedelta(microseconds=1)
    assert texts == sorted(texts)
