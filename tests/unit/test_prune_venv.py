"""scripts/prune-venv.sh (`make`'s last install step) leaves a venv holding only what
requirements.lock holds, plus the editable project: a leftover of an older lock is
uninstalled by pip, and the installer pip itself stays. A real venv, no network."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _installed_by_hand(venv: Path, name: str, version: str) -> None:
    """A distribution as pip leaves it: a module and a dist-info whose RECORD lists both."""
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    stem = re.sub(r"[-.]", "_", name)
    module, info = f"{stem}.py", f"{stem}-{version}.dist-info"
    (site / module).write_text("VALUE = 1\n")
    (site / info).mkdir()
    (site / info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    (site / info / "INSTALLER").write_text("pip\n")
    (site / info / "RECORD").write_text(
        f"{module},,\n{info}/METADATA,,\n{info}/INSTALLER,,\n{info}/RECORD,,\n"
    )


def _freeze(venv: Path) -> set[str]:
    out = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {canonicalize_name(line.split("==")[0]) for line in out.splitlines()}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    return path


def test_a_package_the_lock_does_not_hold_is_uninstalled_and_locked_ones_stay(
    venv: Path,
) -> None:
    _installed_by_hand(venv, "Opa_Python.Client", "3.0.0")  # not in the lock, odd spelling
    _installed_by_hand(venv, "PyYAML", "6.0.3")  # in the lock (at another version: kept)
    assert {"opa-python-client", "pyyaml"} <= _freeze(venv)

    run = subprocess.run(
        [ROOT / "scripts" / "prune-venv.sh", venv], check=True, capture_output=True, text=True
    )

    assert "opa-python-client" in run.stdout
    left = _freeze(venv)
    assert "opa-python-client" not in left
    assert {"pip", "pyyaml"} <= left
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    assert not (site / "Opa_Python_Client.py").exists()


def test_a_venv_that_matches_the_lock_is_left_alone(venv: Path) -> None:
    before = _freeze(venv)
    run = subprocess.run(
        [ROOT / "scripts" / "prune-venv.sh", venv], check=True, capture_output=True, text=True
    )
    assert run.stdout == ""
    assert _freeze(venv) == before
