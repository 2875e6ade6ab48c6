"""The remote policy commands never send a credential in clear text across the network:
a plain-`http://` control plane on another host is refused before any password is read or
any request is made (exit 2), unless KAIZEN_ALLOW_INSECURE_CONTROL_PLANE says the network
is trusted; loopback is fine (`kaizen-studio up`)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from kaizen_studio.cli import main


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAIZEN_URL", "KAIZEN_API_KEY", "KAIZEN_ALLOW_INSECURE_CONTROL_PLANE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))


@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "publish", "--url", "http://cp.example.com", "--api-key", "ks_secret"],
        ["policy", "test", "--remote", "--url", "http://10.0.0.7:8000", "--api-key", "k"],
        ["login", "--url", "http://cp.example.com", "--email", "a@example.com", "--password-stdin"],
    ],
)
def test_plain_http_to_another_host_is_refused_before_anything_is_sent(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.StringIO("a password\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "plain http to another host" in err
    assert "ks_secret" not in err
    assert stdin.tell() == 0, "the password was not even read"


def test_a_trusted_network_may_say_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZEN_ALLOW_INSECURE_CONTROL_PLANE", "true")
    code = main(["policy", "publish", "--url", "http://cp.invalid", "--api-key", "k"])
    assert code == 2
    err = capsys.readouterr().err
    assert "did not answer" in err  # past the check, to a host that does not exist
    assert "plain http" not in err
