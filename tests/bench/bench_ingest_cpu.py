"""The control plane's own work per ingested decision: `python -m tests.bench bench_ingest_cpu`.

`bench_log_shipping` times the whole pipeline (sidecar, control plane, PostgreSQL on two
shared cores), whose figures move by ±15 % from run to run on these machines. This bench
times only the Python the control plane runs per record of a 1,000-decision batch, in one
process, without a database: inflating the gzip body, parsing and validating it, building
the rows, the chain's canonical encoding, the chain itself and the `COPY` records — the
steps `services/ingest.py` takes before and around PostgreSQL's `COPY`. The records are
`bench_decision_log`'s (half of them with a `null`, as real ones have).

Each step's figure is the best of `KAIZEN_BENCH_ROUNDS` (default 30) passes, which is
stable to a few per cent. With `KAIZEN_BENCH_BASE=DIR` (e.g. a worktree of `main`) the
same steps run from that checkout too, in a subprocess, for a before/after in one run.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "30"))
BASE = os.environ.get("KAIZEN_BENCH_BASE")
RECORDS = 1000
STEPS = ("inflate", "parse and validate", "rows", "canonical encoding", "chain", "COPY records")


class _Chain:
    head_sequence = 0
    head_hash = "0" * 64


def batch() -> bytes:
    """The ingest body a sidecar sends for RECORDS of `bench_decision_log`'s decisions."""
    from authz_sidecar.decision_log.records import body, encode_line  # noqa: TID251
    from tests.bench.bench_decision_log import decision

    lines = [encode_line(decision(n), []) for n in range(RECORDS)]
    return body([line[:-1] for line in lines], compress=True)


def measure(sent: bytes) -> dict[str, float]:
    """µs per record of each step (best of ROUNDS), with whichever checkout's
    `control_plane` is imported."""
    from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID

    from control_plane.services import ingest
    from control_plane.services.decision_chain import append
    from control_plane.services.gateways import GatewayIdentity

    # As the control plane holds them: read from PostgreSQL by asyncpg.
    organization, gateway = (AsyncpgUUID(str(uuid.uuid4())) for _ in range(2))
    identity = GatewayIdentity(gateway, organization, "bench")

    def one_pass() -> list[float]:
        marks = [time.perf_counter()]
        raw = ingest.inflate(sent, "gzip", 1 << 30)
        marks.append(time.perf_counter())
        batch = ingest.parse_batch(raw)
        marks.append(time.perf_counter())
        rows = _rows(ingest, identity, batch.decisions)
        marks.append(time.perf_counter())
        encoded = ingest._encode_rows(rows, "decisions")
        marks.append(time.perf_counter())
        append(_Chain(), rows, [done.canonical for done in encoded])  # type: ignore[arg-type]
        marks.append(time.perf_counter())
        [ingest._COPY_ORDER({**row, **done.texts}) for row, done in zip(rows, encoded, strict=True)]
        marks.append(time.perf_counter())
        return [(b - a) * 1e6 / RECORDS for a, b in itertools.pairwise(marks)]

    passes = [one_pass() for _ in range(ROUNDS)]
    return {step: min(p[index] for p in passes) for index, step in enumerate(STEPS)}


def _rows(ingest: Any, identity: Any, records: Any) -> list[dict[str, Any]]:
    """`ingest.sidecar_rows`; checkouts from before it (deb22a0 and older) built the same
    rows inside `ingest.decisions`, as here."""
    if hasattr(ingest, "sidecar_rows"):
        return list(ingest.sidecar_rows(identity, records))
    return [
        ingest.decision_row(
            identity.organization_id,
            identity.gateway_id,
            decision_id=r.decision_id,
            time=r.time,
            decision_input=r.input,
            result=r.result,
            duration_us=r.duration_us,
            instance=r.instance,
            source="sidecar",
        )
        for r in records
    ]


def _from(checkout: str, sent: bytes) -> dict[str, float]:
    """`measure` in a subprocess that imports `control_plane` from `checkout`."""
    with tempfile.NamedTemporaryFile(suffix=".json.gz") as body:
        body.write(sent)
        body.flush()
        done = subprocess.run(
            [sys.executable, __file__, "--measure", body.name],
            env={**os.environ, "PYTHONPATH": checkout},
            capture_output=True,
            text=True,
            check=True,
        )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    sent = batch()
    here = measure(sent)
    here["total"] = sum(here.values())
    print(
        f"µs of the control plane's CPU per record, {RECORDS:,}-decision batches, best of {ROUNDS}"
    )
    print(f"{'step':<22} {'this checkout':>14}" + (f" {'base':>10} {'ratio':>7}" if BASE else ""))
    base = None
    if BASE:
        base = _from(BASE, sent)
        base["total"] = sum(base.values())
    for step in (*STEPS, "total"):
        line = f"{step:<22} {here[step]:>14.2f}"
        if base is not None:
            line += f" {base[step]:>10.2f} {here[step] / base[step]:>7.2f}"
        print(line)
    if base is not None:
        print(f"this checkout ÷ {BASE}: {here['total'] / base['total']:.2f} in all")
    print(
        "goal (M9): 20,000 decisions/s end to end needs ≤ 100 µs per record in sidecar, "
        "control plane and PostgreSQL together (bench_log_shipping)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:  # run by _from, with another checkout's control_plane
        print(json.dumps(measure(Path(sys.argv[2]).read_bytes())))
    else:
        main()
