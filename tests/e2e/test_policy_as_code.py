"""Policy-as-code against a running control plane (M15 item 2), and the typed client under it
(item 3): a real control-plane process on PostgreSQL, the CLI run in-process (and once as a
program, the way a CI job runs it). A policy repository is pushed, tested remotely with
JUnit output, refused at publish while a test fails, replayed and published; exit codes
tell "the policy is at fault" (1) from "could not run" (2)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from kaizen_studio.cli import main
from kaizen_studio.client import ApiError, KaizenClient, Unreachable
from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs

ROLES = """\
kind: RolePolicy
metadata: {name: ci-roles}
spec:
  roles:
    - name: deployer
      permissions:
        - {resource: "agent:deploy-bot", actions: [invoke]}
  bindings:
    - {subject: "user:ci@example.com", role: deployer}
"""
TESTS = """\
kind: PolicyTest
metadata: {name: ci-roles-tests}
spec:
  cases:
    - name: the bound user may invoke deploy-bot
      input:
        principal: {id: "user:ci@example.com", type: user}
        action: invoke
        resource: {type: agent, id: "agent:deploy-bot"}
      expect: {outcome: allow}
    - name: nobody else may
      input:
        principal: {id: "user:eve@example.com", type: user}
        action: invoke
        resource: {type: agent, id: "agent:deploy-bot"}
      expect: {outcome: deny}
"""
FAILING = """\
kind: PolicyTest
metadata: {name: wrong-expectation}
spec:
  cases:
    - name: eve expected to get in
      input:
        principal: {id: "user:eve@example.com", type: user}
        action: invoke
        resource: {type: agent, id: "agent:deploy-bot"}
      expect: {outcome: allow}
"""


EVE = "user:eve@example.com"


def _recorded(decision_id: str, principal: str, time: str) -> dict[str, Any]:
    """A decision as a sidecar ships it: `principal` was allowed to invoke deploy-bot."""
    return {
        "decision_id": decision_id,
        "time": time,
        "input": {
            "principal": {"id": principal, "type": "user"},
            "action": "invoke",
            "resource": {"type": "agent", "id": "agent:deploy-bot"},
            "channel": "api",
        },
        "result": {"decision_id": decision_id, "outcome": "allow", "reasons": []},
    }


@pytest.fixture(scope="module")
def control_plane(shared_control_plane: procs.ControlPlane) -> procs.ControlPlane:
    """The suite's shared control plane (none of these tests stops it); each test signs up
    its own organisation, with an email of its own."""
    return shared_control_plane


@pytest.fixture
def email() -> str:
    return f"sec-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture
def owner(control_plane: procs.ControlPlane, email: str) -> dict[str, str]:
    answer = httpx.post(
        f"{control_plane.url}/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "organization": "PaC"},
    )
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    root.mkdir()
    (root / "roles.yaml").write_text(ROLES)
    (root / "tests.yaml").write_text(TESTS)
    return root


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own; no KAIZEN_URL/KAIZEN_API_KEY from outside."""
    for name in ("KAIZEN_URL", "KAIZEN_API_KEY", "KAIZEN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cli(capsys: pytest.CaptureFixture[str], *argv: object, stdin: str = "") -> tuple[int, str, str]:
    capsys.readouterr()
    sys.stdin = io.StringIO(stdin)
    try:
        code = main([str(a) for a in argv])
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def junit_cases(xml: str) -> dict[str, bool]:
    """{case name: passed} of a JUnit report."""
    suite = ET.fromstring(xml).find("testsuite")  # noqa: S314  (our own output)
    assert suite is not None
    return {c.get("name", ""): c.find("failure") is None for c in suite.iter("testcase")}


def test_login_push_test_replay_publish_with_ci_exit_codes(
    control_plane: procs.ControlPlane,
    email: str,
    owner: dict[str, str],
    repo: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = control_plane.url
    code, out, err = cli(
        capsys, "login", "--url", url, "--email", email, "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "logged in" in out
    saved = home / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert PASSWORD not in saved.read_text()
    # The saved session is for that control plane only: another URL never gets its token.
    elsewhere = f"http://127.0.0.1:{procs.free_port()}"
    code, _, err = cli(capsys, "policy", "test", "--remote", "--url", elsewhere)
    assert code == 2
    assert f"not logged in to {elsewhere}" in err

    code, out, err = cli(capsys, "policy", "push", repo)
    assert (code, err) == (0, ""), err
    assert "pushed 2 documents: 2 created" in out

    code, out, err = cli(capsys, "policy", "test", "--remote", "--format", "junit")
    assert code == 0, err
    assert junit_cases(out) == {
        "the bound user may invoke deploy-bot": True,
        "nobody else may": True,
    }

    # A failing case: the remote test run and the publish both say so, exit 1.
    (repo / "failing.yaml").write_text(FAILING)
    code, out, err = cli(capsys, "policy", "test", "--remote", repo, "--format", "junit")
    assert code == 1, err
    assert junit_cases(out)["eve expected to get in"] is False
    assert "expected allow, got deny" in out
    code, out, err = cli(capsys, "policy", "publish", "--format", "json")
    assert code == 1
    assert json.loads(out)["failures"][0]["case"] == "eve expected to get in"

    (repo / "failing.yaml").unlink()
    deleted = httpx.get(f"{url}/api/v1/policies", headers=owner).json()["items"]
    wrong = next(p for p in deleted if p["name"] == "wrong-expectation")
    assert httpx.delete(f"{url}/api/v1/policies/{wrong['id']}", headers=owner).status_code == 204

    # Recorded traffic: under the drafts eve's earlier allow would become a deny (risky).
    gateway = httpx.post(
        f"{url}/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test"},
        headers=owner,
    ).json()
    recent = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    traffic = [_recorded("d1", "user:ci@example.com", recent), _recorded("d2", EVE, recent)]
    ingested = httpx.post(
        f"{url}/api/v1/decisions/ingest",
        json={"decisions": traffic},
        headers={"Authorization": f"Bearer {gateway['credential']}"},
    )
    assert ingested.json()["accepted"] == 2, ingested.text
    code, out, err = cli(capsys, "policy", "replay", "--since", "1h", "--fail-on-risky")
    assert code == 1, err
    assert "2 decisions, 1 would change, 1 risky" in out
    assert "allow->deny: 1" in out
    code, out, err = cli(capsys, "policy", "replay", "--since", "1h", "--format", "json")
    assert code == 0, err
    replayed = json.loads(out)
    assert (replayed["status"], replayed["result"]["risky"]) == ("completed", 1)

    code, out, err = cli(
        capsys, "policy", "publish", "-m", "from CI", "--accept-replay", replayed["id"]
    )
    assert code == 0, err
    assert out.startswith("published revision 1 ")
    published = httpx.get(f"{url}/api/v1/policies", headers=owner).json()["items"]
    assert {p["name"]: p["published_version"] for p in published} == {
        "ci-roles": 1,
        "ci-roles-tests": 1,
    }


def test_could_not_run_is_2_and_a_bad_policy_is_1(
    control_plane: procs.ControlPlane,
    email: str,
    owner: dict[str, str],
    repo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = control_plane.url
    code, _, err = cli(capsys, "policy", "push", repo, "--url", url)
    assert code == 2
    assert "not logged in" in err

    code, _, err = cli(capsys, "policy", "publish", "--url", url, "--api-key", "ks_not_a_key")
    assert code == 2
    assert "401" in err

    closed = f"http://127.0.0.1:{procs.free_port()}"
    code, _, err = cli(capsys, "policy", "test", "--remote", "--url", closed, "--api-key", "k")
    assert code == 2
    assert "did not answer" in err

    code, _, err = cli(
        capsys, "login", "--url", url, "--email", email, "--password-stdin",
        stdin="wrong password\n",
    )  # fmt: skip
    assert code == 2
    assert not (tmp_path / "home" / "credentials.json").exists()

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "roles.yaml").write_text(ROLES.replace("role: deployer", "role: nobody"))
    key = httpx.post(
        f"{url}/api/v1/api-keys", json={"name": "ci", "role": "security_admin"}, headers=owner
    ).json()["key"]
    code, _, err = cli(capsys, "policy", "push", broken, "--url", url, "--api-key", key)
    assert code == 1
    assert f"{broken / 'roles.yaml'}:9:" in err  # file:line:column, before anything is sent
    assert httpx.get(f"{url}/api/v1/policies", headers=owner).json()["items"] == []


def test_ci_runs_it_as_a_program_with_an_api_key(
    control_plane: procs.ControlPlane, owner: dict[str, str], repo: Path, home: Path
) -> None:
    """The README's CI example: KAIZEN_URL and KAIZEN_API_KEY, JUnit on stdout."""
    key = httpx.post(
        f"{control_plane.url}/api/v1/api-keys",
        json={"name": "ci", "role": "security_admin"},
        headers=owner,
    ).json()["key"]
    env = {**os.environ, "KAIZEN_URL": control_plane.url, "KAIZEN_API_KEY": key}
    program = [str(Path(sys.executable).with_name("kaizen-studio")), "policy"]
    for argv in (["push", str(repo)], ["test", "--remote", "--format", "junit"], ["publish"]):
        run = subprocess.run(
            [*program, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, run.stderr
        assert key not in run.stdout + run.stderr, "the key is never printed"
    assert "published revision 1" in run.stdout


def test_the_client_refreshes_an_expired_login_and_reads_decisions_and_approvals(
    control_plane: procs.ControlPlane, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = control_plane.url
    email = f"aud-{uuid.uuid4().hex[:8]}@example.com"
    signed_up = httpx.post(
        f"{url}/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "organization": "Client"},
    )
    assert signed_up.status_code == 201, signed_up.text
    with KaizenClient(url) as client:
        tokens = client.auth.login(email, PASSWORD)
        assert client.auth.me().kind == "user"
        assert client.decisions.list(outcome="deny").items == []
        assert list(client.decisions.search()) == []
        assert client.approvals.list().items == []
        assert client.decisions.export() == b""
        with pytest.raises(ApiError) as refused:
            client.approvals.approve("no-such-request")
        assert refused.value.status == 404

    seen: list[str] = []
    with KaizenClient(
        url,
        access_token="not-a-token",
        refresh_token=tokens.refresh_token,
        on_tokens=lambda pair: seen.append(pair.access_token),
    ) as client:
        assert client.auth.me().kind == "user"  # refreshed once, then retried
    assert len(seen) == 1

    with pytest.raises(Unreachable), KaizenClient(f"http://127.0.0.1:{procs.free_port()}") as c:
        c.auth.me()


class _LosesAnswers(httpx.BaseTransport):
    """The real control plane behind a network that loses the answers to the first
    `publishes` publish requests after they were processed (a replica dying mid-answer):
    the first as no answer at all, the next as the 503 a proxy would send."""

    def __init__(self, publishes: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = publishes
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != "/api/v1/policies/publish":
            return response
        self.keys.append(request.headers["idempotency-key"])
        if self.lost == 0:
            return response
        response.read()  # processed and stored; only the answer goes missing
        response.close()
        self.lost -= 1
        if self.lost % 2 == 1:
            raise httpx.RemoteProtocolError("server disconnected without sending a response")
        return httpx.Response(503, text="upstream connect error or disconnect/reset")

    def close(self) -> None:
        self.inner.close()


def test_the_client_sends_a_publish_again_and_gets_the_first_revision(
    control_plane: procs.ControlPlane,
) -> None:
    url = control_plane.url
    signup = httpx.post(
        f"{url}/api/v1/auth/signup",
        json={
            "email": f"lost-{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD,
            "organization": "Lossy",
        },
    ).json()
    network = _LosesAnswers(publishes=2)
    with KaizenClient(url, access_token=signup["access_token"], transport=network) as client:
        client.policies.apply(ROLES)
        revision = client.policies.publish(message="through a lossy network")
        assert revision.revision == 1
        assert len(network.keys) == 3  # sent thrice…
        assert len(set(network.keys)) == 1  # …with one key
        assert client.policies.publish().revision == 2  # a new publish: a new key
        with pytest.raises(ApiError) as refused:  # a refusal is not a lost answer: no repeat
            client.policies.publish(idempotency_key="bad key")
        assert refused.value.status == 422
        assert network.keys.count("bad key") == 1
    bundles = httpx.get(
        f"{url}/api/v1/bundles", headers={"Authorization": f"Bearer {signup['access_token']}"}
    ).json()
    assert [b["revision"] for b in bundles["items"]] == [1, 2]
