"""Our check rate against a peer PDP's: `python -m tests.bench bench_cerbos`.

Cerbos (the real PDP binary, shipped in the npm package `@cerbos/cerbos-linux-x64`, fetched
once into ~/.cache/kaizen-studio) and our sidecar answer the same question — may
alice@example.com, holding the role `agent-user`, invoke `agent:support-bot`? — over HTTP,
each with as many cores as this machine has, under the same load generator (wrk, 2 threads,
64 connections, no Envoy in front). Rows, taking turns in each round:

(n) the no-op HTTP ext_authz server of bench_sidecar: the ceiling of a Python HTTP server;
(c1) Cerbos `POST /api/check/resources`, principal and roles in the request (plain RBAC);
(c2) the same with the caller's JWT verified by Cerbos (`auxData.jwt`, the same EdDSA key
     set our sidecar trusts) and a condition tying the principal to the token's `email`;
(s1) our sidecar `/ext_authz/...`, an RBAC-only bundle: JWT verified, roles from the bundle;
(s2) our sidecar with the full benchmark decision of bench_sidecar (RBAC, Rego, a budget
     reserved in Redis).
Both sidecar rows run as in production (`stand_in`): every check is logged and shipped and
its decision header signed (Cerbos logs nothing here: its audit log is off by default).

(c2) ÷ (s1) is the like-for-like pair: both verify a token and resolve roles. Compare the
rows of one run, never numbers across runs or machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

import httpx

from tests.bench.bench_sidecar import BENCH_POLICY, REDIS_URL, WORKERS, _forget
from tests.bench.stand_in import control_plane_env
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import ALICE, Keys, access_token, make_bundle, make_keys

CERBOS_VERSION = "0.55.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kaizen-studio"
DURATION = int(os.environ.get("KAIZEN_BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "2"))
PATH = "/ext_authz/v1/agents/support-bot/invoke"

RBAC_ONLY_POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions:
        - {resource: "agent:*", actions: [invoke]}
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
"""

CERBOS_POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: agent
  rules:
    - actions: ["invoke"]
      effect: EFFECT_ALLOW
      roles: ["agent-user"]
---
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: verified_agent
  rules:
    - actions: ["invoke"]
      effect: EFFECT_ALLOW
      roles: ["agent-user"]
      condition:
        match:
          expr: request.aux_data.jwt.email == request.principal.id
"""

ROWS = (
    "(n) no-op HTTP",
    "(c1) Cerbos RBAC",
    "(c2) Cerbos JWT+RBAC",
    "(s1) sidecar RBAC",
    "(s2) sidecar full",
)


def cerbos_binary() -> Path:
    """The pinned Cerbos release, unpacked from its npm package on first use."""
    target = CACHE / f"cerbos-{CERBOS_VERSION}" / "cerbos"
    if target.exists():
        return target
    if shutil.which("npm") is None:
        raise RuntimeError("bench_cerbos needs npm to fetch @cerbos/cerbos-linux-x64")
    print(f"fetching Cerbos {CERBOS_VERSION} (npm @cerbos/cerbos-linux-x64, ~32 MB)", flush=True)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            ["npm", "pack", "--silent", f"@cerbos/cerbos-linux-x64@{CERBOS_VERSION}"],
            cwd=work,
            check=True,
            capture_output=True,
        )
        (archive,) = Path(work).glob("*.tgz")
        with tarfile.open(archive) as tar:
            member = tar.getmember("package/cerbos-linux-x64")
            source = tar.extractfile(member)
            if source is None:
                raise RuntimeError(f"no Cerbos binary in {archive.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            partial.write_bytes(source.read())
            partial.chmod(0o755)
            partial.rename(target)
    return target


def start_bundle_sidecar(
    stack: contextlib.ExitStack,
    tmp: Path,
    keys: Keys,
    name: str,
    policy: str,
    prefix: str,
    workers: int,
    **env: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """A sidecar serving `policy` in a bundle signed by `keys` (whose JWKS is in
    `tmp/jwks.json`), stopped with `stack`; the process and its `/ext_authz` check URL.
    `env`: more environment for it (traces, another checkout's PYTHONPATH, and
    `stand_in.control_plane_env` for a production-shaped one that logs and signs)."""
    (tmp / f"{name}.tar.gz").write_bytes(make_bundle(keys, policy=policy))
    http = procs.free_port()
    process = stack.enter_context(
        procs.running(
            procs.start_sidecar(
                tmp / f"home-{name}",
                procs.free_port(),
                http,
                KAIZEN_SIDECAR_BUNDLE=str(tmp / f"{name}.tar.gz"),
                KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=prefix,
                KAIZEN_SIDECAR_WORKERS=str(workers),
                **env,
            )
        )
    )
    return process, f"http://127.0.0.1:{http}{PATH}"


def _start_cerbos(directory: Path, jwks: Path) -> tuple[subprocess.Popen[bytes], int]:
    policies = directory / "policies"
    policies.mkdir()
    for index, document in enumerate(CERBOS_POLICY.split("---\n")):
        (policies / f"policy-{index}.yaml").write_text(document)
    http, grpc = procs.free_port(), procs.free_port()
    config = directory / "cerbos.yaml"
    config.write_text(
        json.dumps(
            {
                "server": {
                    "httpListenAddr": f"127.0.0.1:{http}",
                    "grpcListenAddr": f"127.0.0.1:{grpc}",
                },
                "storage": {"driver": "disk", "disk": {"directory": str(policies)}},
                "auxData": {"jwt": {"keySets": [{"id": "kaizen", "local": {"file": str(jwks)}}]}},
                "audit": {"enabled": False},
                "telemetry": {"disabled": True},
            }
        )
    )
    process = procs.spawn(
        [str(cerbos_binary()), "server", f"--config={config}", "--log-level=error"],
        env={**os.environ, "CERBOS_NO_TELEMETRY": "1", "GOMAXPROCS": str(WORKERS)},
    )
    procs._wait(f"http://127.0.0.1:{http}/_cerbos/health", process, "cerbos")
    return process, http


def _cerbos_body(kind: str, token: str | None) -> str:
    body: dict[str, object] = {
        "requestId": "bench",
        "principal": {"id": ALICE, "roles": ["agent-user"]},
        "resources": [{"actions": ["invoke"], "resource": {"kind": kind, "id": "support-bot"}}],
    }
    if token is not None:
        body["auxData"] = {"jwt": {"token": token, "keySetId": "kaizen"}}
    return json.dumps(body)


def _allowed_by_cerbos(url: str, body: str) -> bool:
    answer = httpx.post(url, content=body, headers={"content-type": "application/json"})
    answer.raise_for_status()
    effect = answer.json()["results"][0]["actions"]["invoke"]
    return bool(effect == "EFFECT_ALLOW")


def wrk_run(
    url: str, script: Path, *, threads: int = 2, connections: int = 64, seconds: int = DURATION
) -> dict[str, float]:
    """One wrk run: requests answered, req/s, p50 (ms) and non-2xx answers."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rps,
        "requests": requests,
        "p50": float(p50[1]) * scale[p50[2]] if p50 else float("nan"),
        "errors": int(non2xx[1]) if non2xx else 0,
    }


def _script(path: Path, headers: dict[str, str], body: str = "") -> Path:
    lines = ['wrk.method = "POST"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if body:
        lines.append(f"wrk.body = {json.dumps(body)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    if shutil.which("wrk") is None:
        print("skipped: needs wrk (apt-get install -y wrk)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-cerbos-"))
    keys = make_keys()
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks))
    token = access_token(keys, exp=2_000_000_000)
    bearer = {"Authorization": f"Bearer {token}"}
    json_type = {"Content-Type": "application/json"}
    rounds: dict[str, list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        cerbos, cerbos_port = _start_cerbos(tmp, jwks)
        stack.enter_context(procs.running(cerbos))
        noop = procs.free_port()
        stack.enter_context(procs.running(procs.start_helper("noop-http", noop, str(WORKERS))))
        prefix = f"kaizen-bench-{secrets.token_hex(4)}:"
        stack.callback(_forget, prefix)
        sidecars = {}
        # As in production: a gateway credential and a control plane, so every check is
        # logged and its decision header signed (before 2026-12-04 evening they were not).
        production = control_plane_env(stack)
        for name, policy in (("rbac", RBAC_ONLY_POLICY), ("full", BENCH_POLICY)):
            _, sidecars[name] = start_bundle_sidecar(
                stack, tmp, keys, name, policy, prefix, WORKERS, **production
            )
        check = f"http://127.0.0.1:{cerbos_port}/api/check/resources"
        plain, verified = _cerbos_body("agent", None), _cerbos_body("verified_agent", token)
        # Positive controls: each PDP allows this call, and Cerbos's condition really reads
        # the verified token (a token for someone else is denied), so no row measures a no.
        other = access_token(keys, "mallory@example.com", exp=2_000_000_000)
        controls = (
            _allowed_by_cerbos(check, plain),
            _allowed_by_cerbos(check, verified),
            not _allowed_by_cerbos(check, _cerbos_body("verified_agent", other)),
        )
        if not all(controls):
            raise RuntimeError(f"Cerbos positive/negative controls failed: {controls}")
        targets = {
            ROWS[0]: (f"http://127.0.0.1:{noop}{PATH}", _script(tmp / "n.lua", bearer)),
            ROWS[1]: (check, _script(tmp / "c1.lua", json_type, plain)),
            ROWS[2]: (check, _script(tmp / "c2.lua", json_type, verified)),
            ROWS[3]: (sidecars["rbac"], _script(tmp / "s1.lua", bearer)),
            ROWS[4]: (sidecars["full"], _script(tmp / "s2.lua", bearer)),
        }
        for name in ROWS[3:]:
            status = httpx.post(targets[name][0], headers=bearer).status_code
            if status != 200:
                raise RuntimeError(f"{name} answered {status}, not an allow")
        for round_ in range(ROUNDS):
            for name in ROWS:
                print(f"round {round_ + 1}/{ROUNDS}: {name} ...", flush=True)
                rounds.setdefault(name, []).append(wrk_run(*targets[name]))
    _print(rounds)


def _print(rounds: dict[str, list[dict[str, float]]]) -> None:
    def median(name: str, field: str) -> float:
        return statistics.median(row[field] for row in rounds[name])

    print(
        f"\nCerbos {CERBOS_VERSION} and our sidecar, {WORKERS} core(s) each, direct HTTP, "
        f"wrk -t2 -c64, {DURATION} s per cell, median of {ROUNDS} interleaved round(s)"
    )
    print(f"{'row':<24} {'checks/s':>9} {'p50 ms':>8} {'non-200':>8}")
    for name in ROWS:
        print(
            f"{name:<24} {median(name, 'rps'):>9.0f} {median(name, 'p50'):>8.2f} "
            f"{sum(row['errors'] for row in rounds[name]):>8.0f}"
        )

    def ratio(ours: str, theirs: str) -> str:
        per_round = [o["rps"] / t["rps"] for o, t in zip(rounds[ours], rounds[theirs], strict=True)]
        return f"{statistics.median(per_round):.2f}"

    print("\nratios (goal: ours >= Cerbos on the same machine and load):")
    print(f"  sidecar RBAC / Cerbos JWT+RBAC = {ratio(ROWS[3], ROWS[2])}  (like for like)")
    print(f"  sidecar RBAC / Cerbos RBAC     = {ratio(ROWS[3], ROWS[1])}")
    print(f"  sidecar full / Cerbos JWT+RBAC = {ratio(ROWS[4], ROWS[2])}")
    print(f"  Cerbos RBAC / no-op HTTP       = {ratio(ROWS[1], ROWS[0])}")
    print(f"  sidecar RBAC / no-op HTTP      = {ratio(ROWS[3], ROWS[0])}")


if __name__ == "__main__":
    main()
