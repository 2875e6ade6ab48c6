"""Fixtures for the gateway's unit tests: the local fake LLM server (tests/fake_llm.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_llm import FakeLLM, running_fake_llm


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.fixture
def fake(fake_llm_server: FakeLLM) -> FakeLLM:
    fake_llm_server.reset()
    return fake_llm_server
