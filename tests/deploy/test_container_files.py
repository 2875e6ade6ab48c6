"""Dockerfile and docker-compose.yml, checked without a Docker engine: every path they copy
exists, every Kaizen command they run parses, the image runs unprivileged, and the compose
gateway pod runs the same Envoy config as the chart (and so as the e2e tests)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from kaizen_studio.cli import build_parser
from tests.deploy.helm import CHART, by_kind, render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_is_multi_stage_with_the_studio_built_in() -> None:
    stages = [args for op, args in _instructions() if op == "FROM"]
    assert len(stages) == 3
    assert stages[0].startswith("node:")
    assert " AS ui" in stages[0]
    copies = [args for op, args in _instructions() if op == "COPY"]
    assert any(c.startswith("--from=ui ") and "ui/dist" in c for c in copies)


def test_dockerfile_copies_only_what_exists() -> None:
    for op, args in _instructions():
        if op != "COPY" or args.startswith("--from="):
            continue
        for source in shlex.split(args)[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"


def test_image_runs_as_a_non_root_user() -> None:
    users = [args for op, args in _instructions() if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert [args for op, args in _instructions() if op == "ENTRYPOINT"] == ['["kaizen-studio"]']
    default = [args for op, args in _instructions() if op == "CMD"][-1]
    build_parser().parse_args(yaml.safe_load(default))  # a command the CLI knows


def test_dockerignore_keeps_state_and_keys_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "**/master.key", ".env"} <= ignored


def _kaizen_services() -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in COMPOSE["services"].items()
        if s.get("image") == "kaizen-studio:local" and "entrypoint" not in s
    }


def test_compose_runs_the_whole_product() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "redis", "openbao", "control-plane", "sidecar", "gateway", "envoy"} <= set(
        services
    )
    for name, service in _kaizen_services().items():
        build_parser().parse_args(service["command"])  # each command parses
        assert service["read_only"] is True, name
    pod = {name: services[name].get("network_mode") for name in ("gateway", "envoy")}
    assert pod == {"gateway": "service:sidecar", "envoy": "service:sidecar"}
    sidecar_env = services["sidecar"]["environment"]
    assert "KAIZEN_SIDECAR_TRUSTED_PROXIES" not in sidecar_env  # ext_authz: loopback only


def test_compose_envoy_config_equals_the_charts(tmp_path: Path) -> None:
    """Run the compose's renderer on deploy/envoy/envoy.yaml; the chart's output must match."""
    renderer = COMPOSE["services"]["envoy-config"]
    script = renderer["command"][0].replace("$$", "$")  # compose's escape for a literal $
    (tmp_path / "template").mkdir()
    (tmp_path / "envoy").mkdir()
    template = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    (tmp_path / "template" / "envoy.yaml").write_text(template)
    script = script.replace('"/template/', f'"{tmp_path}/template/')
    script = script.replace('"/envoy/', f'"{tmp_path}/envoy/')
    exec(compile(script, "docker-compose.yml:envoy-config", "exec"), {})  # noqa: S102  (our own file)
    composed = yaml.safe_load((tmp_path / "envoy" / "envoy.yaml").read_text())
    config_map = [c for c in by_kind(render(CHART / "ci" / "gateway-values.yaml"), "ConfigMap")]
    charted = yaml.safe_load(config_map[0]["data"]["envoy.yaml"])
    assert composed == charted


def test_compose_postgres_archives_wal_for_point_in_time_recovery() -> None:
    postgres = COMPOSE["services"]["postgres"]
    command = postgres["command"]
    assert command[0] == "postgres"
    settings = dict(arg.split("=", 1) for arg in command[2::2])
    assert all(flag == "-c" for flag in command[1::2])
    assert settings["wal_level"] == "replica"
    assert settings["archive_mode"] == "on"
    assert settings["archive_timeout"] == "60s"  # RPO: a quiet database still ships a segment
    archive = "/var/lib/postgresql/wal-archive"
    assert settings["archive_command"] == f"test ! -f {archive}/%f && cp %p {archive}/%f"
    mounts = dict(volume.split(":", 1)[::-1] for volume in postgres["volumes"])
    assert mounts[archive] != mounts["/var/lib/postgresql/data"]  # not beside the data
    assert "postgres-wal" in COMPOSE["volumes"]
    # The entrypoint hands the archive to the postgres user, then runs the image's own.
    script = postgres["entrypoint"][2].replace("$$", "$")
    assert script.endswith('exec docker-entrypoint.sh "$@"')
    assert f"-o postgres -g postgres -m 700 {archive}" in script
