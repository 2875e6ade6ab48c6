from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from policy import cli

from .conftest import EXAMPLE
from .test_testrunner import FAILING, TESTS


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "example.yaml").write_text(EXAMPLE)
    (tmp_path / "policies" / "tests.yaml").write_text(TESTS)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_register_adds_policy_and_bundle_commands_to_a_parser() -> None:
    parser = argparse.ArgumentParser(prog="kaizen-studio")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["policy", "validate", "x.yaml"])
    assert args.func is cli._validate
    args = parser.parse_args(["bundle", "verify", "b.tar.gz", "--jwks", "j.json", "--scope", "o"])
    assert args.func is cli._verify


def test_validate_reads_a_directory(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, _ = run(capsys, "policy", "validate", workdir / "policies")
    assert code == 0
    assert out == "ok: 5 documents (1 BudgetPolicy, 1 PolicyTest, 1 RegoPolicy, 2 RolePolicy)\n"


def test_validate_prints_file_line_column_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: RolePolicy\nmetadata: {name: r}\nspec:\n  roles: [{name: a, inherits: [zz]}]\n"
    )
    code, _, err = run(capsys, "policy", "validate", bad)
    assert code == 1
    assert err == f"{bad}:4:32: spec.roles[0].inherits[0]: inherits undefined role 'zz'\n"


def test_policy_test_exit_code_and_diff(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, _ = run(capsys, "policy", "test", workdir / "policies")
    assert (code, out) == (0, "2 passed, 0 failed\n")
    (workdir / "policies" / "failing.yaml").write_text(FAILING)
    code, _, err = run(capsys, "policy", "test", workdir / "policies")
    assert code == 1
    assert "FAIL wrong / alice may deploy to prod" in err
    assert "  outcome:  expected allow, got deny   <-- differs" in err
    assert err.endswith("2 passed, 2 failed\n")


def test_compile_writes_the_files_or_prints_json(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    out_dir = workdir / "out"
    code, out, _ = run(
        capsys,
        "policy",
        "compile",
        workdir / "policies" / "example.yaml",
        "--org",
        "org-9",
        "--out",
        out_dir,
    )
    assert (code, out) == (0, f"wrote 4 files to {out_dir}\n")
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()) == [
        "casbin_model.conf",
        "casbin_policy.csv",
        "data.json",
        "kaizen/abac/guardrails/policy.rego",
    ]
    assert json.loads((out_dir / "data.json").read_text())["kaizen"]["organization"] == "org-9"
    code, out, _ = run(capsys, "policy", "compile", workdir / "policies" / "example.yaml")
    assert code == 0
    assert "g, team:sre, role:agent-admin, prod" in json.loads(out)["casbin_policy"]


def test_keygen_build_and_verify(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    key, jwks, bundle = workdir / "key.pem", workdir / "jwks.json", workdir / "bundle.tar.gz"
    assert (
        run(capsys, "bundle", "keygen", "--kid", "k1", "--key-out", key, "--jwks-out", jwks)[0] == 0
    )
    assert key.stat().st_mode & 0o077 == 0
    build = (
        "bundle",
        "build",
        workdir / "policies",
        "--key",
        key,
        "--kid",
        "k1",
        "--scope",
        "org-1",
    )
    code, out, _ = run(capsys, *build, "--revision", "3", "--iat", "1700000000", "-o", bundle)
    assert code == 0
    assert out.startswith(f"wrote {bundle} (revision 3, scope org-1")
    code, out, _ = run(
        capsys,
        "bundle",
        "verify",
        bundle,
        "--jwks",
        jwks,
        "--scope",
        "org-1",
        "--current-revision",
        "2",
    )
    assert (code, out) == (0, f"{bundle}: ok: revision 3, scope org-1, key k1\n")
    code, _, err = run(
        capsys,
        "bundle",
        "verify",
        bundle,
        "--jwks",
        jwks,
        "--scope",
        "org-1",
        "--current-revision",
        "3",
    )
    assert (code, err) == (
        1,
        f"{bundle}: rejected: revision 3 is not newer than the current revision 3\n",
    )


def test_build_refuses_when_policy_tests_fail(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "policies" / "failing.yaml").write_text(FAILING)
    key, jwks = workdir / "key.pem", workdir / "jwks.json"
    run(capsys, "bundle", "keygen", "--kid", "k1", "--key-out", key, "--jwks-out", jwks)
    argv = (
        "bundle",
        "build",
        workdir / "policies",
        "--key",
        key,
        "--kid",
        "k1",
        "--scope",
        "o",
        "--revision",
        "1",
        "-o",
        workdir / "b.tgz",
    )
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "bundle not built: policy tests fail" in err
    assert not (workdir / "b.tgz").exists()
    assert run(capsys, *argv, "--skip-tests")[0] == 0


def test_the_module_runs_as_a_program(workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "policy.cli", "policy", "validate", str(workdir / "policies")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 5 documents")
    usage = subprocess.run(
        [sys.executable, "-m", "policy.cli", "bundle", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert usage.returncode == 2
    assert "--jwks" in usage.stderr
