"""Decision store: search over many stored decisions, and impact replay.

A throw-away PostgreSQL database; a real control-plane process (`kaizen-studio
control-plane`) runs the migrations, then N decisions of one organisation (and N/10 of a
second, interleaved in time, so every query's tenant filter matters) are loaded straight
into the monthly partitions with COPY (asyncpg `copy_records_to_table`) and ANALYZEd. The
rows are shaped as ingest stores them (`services/ingest.py`: search columns taken from the
input, reasons newline-joined, per-organisation sequence in time order), spread over 60
days, ~5,000 principals (skewed: a few are busy), 200 resources, outcomes 90/8/2
allow/deny/require_approval. `chain_hash` is random: the chain does not verify, which a
search or a replay never reads.

Search: each query shape ≥ 200 times through the HTTP API with an auditor's token
(sequential, one keep-alive connection), and as a baseline in the same run the same SQL
the service emits (its SQLAlchemy statement plus the session's tenant filter, compiled for
asyncpg) run directly with asyncpg, so the API's own overhead is visible; plus an
unfiltered first page. Each shape's plan (EXPLAIN ANALYZE) is summarised by its scans.

Replay: `POST /api/v1/policies/replay` over the newest ~100,000 of the organisation's
decisions against a draft that flips some outcomes, polled to completion; baseline: the
engine's `decide` alone, in this process, on the same inputs.

Run: `.venv/bin/python -m tests.bench bench_decision_store` (PostgreSQL and Redis at
KAIZEN_TEST_POSTGRES_URL / KAIZEN_TEST_REDIS_URL). `KAIZEN_BENCH_DECISIONS` sets N
(default 1,000,000); the issue's size is `KAIZEN_BENCH_DECISIONS=10000000`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.db.models import DecisionLog
from control_plane.db.partitions import PARENT, ensure_partitions
from control_plane.schemas.decisions import DecisionQuery
from control_plane.services import decisions as service
from control_plane.services.replay import _as_logged
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from policy.engine.decide import DecisionEngine
from tests.bench.postgres import throwaway_database
from tests.e2e import sidecar_procs as procs

REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DECISIONS = int(os.environ.get("KAIZEN_BENCH_DECISIONS", "1000000"))
OTHER_SHARE = 10  # the second organisation stores N / 10
DAYS = 60
PRINCIPALS = 5000
RESOURCES = 200
TEAMS = 20
SAMPLES = 200
PAGE = 100  # the API's default page size
DEEP = 20  # the deep page is the 20th, reached by following next_cursor
COPY_CHUNK = 100_000
REPLAYED = 100_000
SEED = 6
PASSWORD = "correct horse battery staple"
KINDS = ("support", "code", "shell", "data", "research")
ACTIONS = ("invoke", "invoke", "invoke", "invoke", "read", "deploy")
CHANNELS = ("api", "mcp", "mcp", "cli")
TOOLS = ("search", "fetch", "run_query", "summarise", "create_ticket")
DENY_REASONS = (
    "no role grants {action} on {resource}",
    "agent {resource} is paused",
    "budget exceeded: monthly spend limit for {principal}",
    "tool {tool} is not allowed in {workspace}",
    "request outside business hours",
)
APPROVAL_REASON = "{workspace} needs approval for {action} on {resource}"
ROLES = """kind: RolePolicy
metadata: {{name: agent-roles}}
spec:
  roles:
    - name: agent-user
      permissions: [{{resource: "agent:*", actions: [invoke, read, deploy]}}]
  bindings:
{bindings}"""
PUBLISHED = ROLES.format(
    bindings="".join(
        f'    - {{subject: "team:team-{t}", role: agent-user}}\n' for t in range(TEAMS)
    )
)
# The draft retires one shell agent (→deny) and holds deploys to prod for approval.
# Logged outcomes are drawn 90/8/2 whatever the policy, so logged denies mostly become allows.
GUARDRAILS = """kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "shell-002 is retired" if input.resource.id == "agent:shell-002"
    require_approval contains "prod deploys need approval" if {
      input.action == "deploy"
      input.resource.workspace == "prod"
    }
"""
DRAFT = PUBLISHED + "---\n" + GUARDRAILS
COLUMNS = tuple(column.name for column in DecisionLog.__table__.columns)
ROW = itemgetter(*COLUMNS)
GOAL_SEARCH_P95_MS = 100.0
GOAL_REPLAY_PER_S = 5000.0


# --- the data --------------------------------------------------------------------------


class Population:
    """Principals (skewed), resources and the ids the searches look for."""

    def __init__(self, rng: random.Random, prefix: str) -> None:
        self.principals = [f"user:{prefix}{n:04d}@example.com" for n in range(PRINCIPALS)]
        self.teams = [f"team-{rng.randrange(TEAMS)}" for _ in range(PRINCIPALS)]
        weights = [1 / (rank + 10) for rank in range(PRINCIPALS)]  # Zipf-like
        total = 0.0
        self.cumulative = []
        for weight in weights:
            total += weight
            self.cumulative.append(total)
        self.resources = [f"agent:{KINDS[n % len(KINDS)]}-{n:03d}" for n in range(RESOURCES)]
        self.workspaces = [("prod", "staging", "dev")[n % 3] for n in range(RESOURCES)]


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def decision(
    rng: random.Random,
    people: Population,
    organization_id: uuid.UUID,
    gateway_id: uuid.UUID | None,
    moment: datetime,
    sequence: int,
    principal_index: int,
) -> tuple[Any, ...]:
    """One stored row in the table's column order, as ingest would have stored it."""
    millis = int(moment.timestamp() * 1000)
    decision_id = f"{millis:012x}7{_hex(rng, 76)}"[:32]
    principal = people.principals[principal_index]
    r = rng.randrange(RESOURCES)
    resource, workspace = people.resources[r], people.workspaces[r]
    action, channel, tool = rng.choice(ACTIONS), rng.choice(CHANNELS), rng.choice(TOOLS)
    draw = rng.random()
    fill = {"action": action, "resource": resource, "principal": principal}
    fill.update(tool=tool, workspace=workspace)
    if draw < 0.90:
        outcome, reasons, rules = "allow", [], ["rbac"]
    elif draw < 0.98:
        outcome, rules = "deny", ["rbac" if draw < 0.95 else "abac"]
        reasons = [rng.choice(DENY_REASONS).format(**fill)]
    else:
        outcome, reasons, rules = "require_approval", [APPROVAL_REASON.format(**fill)], ["abac"]
    decision_input = {
        "principal": {"id": principal, "type": "user", "teams": [people.teams[principal_index]]},
        "action": action,
        "resource": {"type": "agent", "id": resource, "workspace": workspace},
        "channel": channel,
        "tool": {"name": tool, "arguments": {"query": "***", "limit": 20}},
        "request": {"method": "POST", "path": "/mcp", "source_ip": f"10.0.{r}.7"},
        "context": {"time": moment.isoformat(), "environment": workspace, "gateway": "edge"},
    }
    result = {
        "decision_id": decision_id,
        "outcome": outcome,
        "reasons": reasons,
        "matched_rules": rules,
        "bundle_revision": 3,
        "key_id": "cp-1",
    }
    values = {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4),
        "organization_id": organization_id,
        "created_at": moment + timedelta(seconds=2),
        "decision_id": decision_id,
        "time": moment,
        "sequence": sequence,
        "chain_hash": _hex(rng, 256),
        "source": "sidecar",
        "gateway_id": gateway_id,
        "instance": f"sidecar-{r % 4}/4242",
        "principal": principal,
        "action": action,
        "resource": resource,
        "workspace": workspace,
        "channel": channel,
        "outcome": outcome,
        "reasons": "\n".join(reasons) or None,
        "bundle_revision": "3",
        "duration_us": 120 + rng.randrange(400),
        "input": json.dumps(decision_input, separators=(",", ":")),
        "result": json.dumps(result, separators=(",", ":")),
    }
    row: tuple[Any, ...] = ROW(values)
    return row


class Load:
    """Both organisations' decisions in time order (ingest order), interleaved."""

    def __init__(self, ours: uuid.UUID, theirs: uuid.UUID, gateway: uuid.UUID, end: datetime):
        self.rng = random.Random(SEED)
        self.orgs = (ours, theirs)
        self.people = (Population(self.rng, "u"), Population(self.rng, "o"))
        self.gateway = gateway
        self.total = DECISIONS + DECISIONS // OTHER_SHARE
        self.start = end - timedelta(days=DAYS)
        self.step = timedelta(days=DAYS) / self.total
        self.sequences = [0, 0]
        self.sample_ids: list[str] = []  # of our organisation, for the decision-id search

    def rows(self, first: int, count: int) -> Iterator[tuple[Any, ...]]:
        rng, start, step = self.rng, self.start, self.step
        # Which principals (by index) send each decision: drawn a chunk at a time.
        principals = rng.choices(range(PRINCIPALS), cum_weights=self.people[0].cumulative, k=count)
        for offset in range(count):
            index = first + offset
            which = 1 if index % (OTHER_SHARE + 1) == OTHER_SHARE else 0
            self.sequences[which] += 1
            moment = start + step * (index + rng.random() * 0.9)
            row = decision(
                rng,
                self.people[which],
                self.orgs[which],
                self.gateway if which == 0 else None,
                moment,
                self.sequences[which],
                principals[offset],
            )
            if which == 0 and rng.random() < 2000 / DECISIONS:
                self.sample_ids.append(row[COLUMNS.index("decision_id")])
            yield row


async def load(url: str, plan: Load) -> tuple[float, float]:
    """COPY every row into the partitions, then ANALYZE: (rows/s of the load, analyze s)."""
    engine = create_async_engine(url)
    try:  # the real code path makes the months' partitions
        days = [plan.start + timedelta(days=d) for d in range(DAYS + 2)]
        await ensure_partitions(engine, days)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        started = time.perf_counter()
        done = 0
        while done < plan.total:
            count = min(COPY_CHUNK, plan.total - done)

            async def records(first: int = done, n: int = count) -> AsyncIterator[Any]:
                for i, row in enumerate(plan.rows(first, n)):
                    if i % 5000 == 0:
                        await asyncio.sleep(0)  # lets asyncpg send what is ready
                    yield row

            await connection.copy_records_to_table(PARENT, records=records(), columns=COLUMNS)
            done += count
            if done % (COPY_CHUNK * 10) == 0 or done == plan.total:
                elapsed = time.perf_counter() - started
                print(f"  loaded {done:>11,} rows  {done / elapsed:>8,.0f} rows/s", flush=True)
        rate = plan.total / (time.perf_counter() - started)
        started = time.perf_counter()
        await connection.execute(f"ANALYZE {PARENT}")
        return rate, time.perf_counter() - started
    finally:
        await connection.close()


def generation_rate() -> float:
    """Rows/s this process makes without COPY: the part of the load rate that is ours."""
    now = datetime.now(UTC)
    plan = Load(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), now)
    started = time.perf_counter()
    count = sum(1 for _ in plan.rows(0, 50_000))
    return count / (time.perf_counter() - started)


# --- the control plane -----------------------------------------------------------------


class Accounts:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        self.owner_email = f"owner-{secrets.token_hex(3)}@example.com"
        owner = self._signup("Bench", self.owner_email)
        self.organization = uuid.UUID(owner["organization_id"])
        self.owner = {"Authorization": f"Bearer {owner['access_token']}"}
        other = self._signup("Other", f"owner-{secrets.token_hex(3)}@example.com")
        self.other = uuid.UUID(other["organization_id"])
        gateway = self.http.post(
            "/api/v1/gateways",
            json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
            headers=self.owner,
        )
        gateway.raise_for_status()
        self.gateway = uuid.UUID(gateway.json()["id"])
        self.auditor_email = f"auditor-{secrets.token_hex(3)}@example.com"
        self.http.post(
            "/api/v1/users",
            json={"email": self.auditor_email, "password": PASSWORD, "role": "auditor"},
            headers=self.owner,
        ).raise_for_status()
        self.auditor: dict[str, str] = {}

    def login(self) -> None:
        """Fresh access tokens (a large load outlasts the first ones)."""
        self.owner = self._login(self.owner_email)
        self.auditor = self._login(self.auditor_email)

    def _login(self, email: str) -> dict[str, str]:
        login = self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        login.raise_for_status()
        return {"Authorization": f"Bearer {login.json()['access_token']}"}

    def _signup(self, organization: str, email: str) -> dict[str, Any]:
        response = self.http.post(
            "/api/v1/auth/signup",
            json={"email": email, "password": PASSWORD, "organization": organization},
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def policies(self, source: str) -> None:
        self.http.post(
            "/api/v1/policies", json={"source": source}, headers=self.owner
        ).raise_for_status()


# --- search ----------------------------------------------------------------------------


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return statistics.median(ordered) * 1000, at(0.95), at(0.99)


Params = dict[str, str]
Percentiles = tuple[float, float, float]
# A search shape: name, API p50/p95/p99, direct SQL p50/p95/p99, plan summary.
Measured = tuple[str, Percentiles, Percentiles, str]


def _sql(params: Params, organization: uuid.UUID) -> tuple[str, list[Any]]:
    """The statement `services.decisions.search` runs for `params`, with the tenant filter
    the session adds, compiled as SQLAlchemy's asyncpg dialect sends it."""
    fields = {k: v for k, v in params.items() if k not in ("cursor", "limit")}
    query = DecisionQuery.model_validate(fields)
    after = service.decode_cursor(params["cursor"]) if "cursor" in params else None
    statement = service._page_query(query, after, PAGE + 1).where(
        DecisionLog.organization_id == organization
    )
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    values = compiled.construct_params()
    return compiled.string, [values[name] for name in compiled.positiontup or ()]


def _plan_summary(plan: list[str]) -> str:
    """The distinct scans of a plan (partitions folded) and its execution time."""
    scans: dict[str, int] = {}
    for line in plan:
        text = line.strip().lstrip("->").strip()
        if " Scan " in f" {text}" or text.startswith(("Append", "Merge Append", "Sort  (")):
            node = text.split("  (")[0]
            for month in ("_p20", "decision_logs_p"):
                if month in node:
                    node = node.split(" on ")[0] + " on <partition>"
            scans[node] = scans.get(node, 0) + 1
    execution = next((ln.strip() for ln in plan if ln.startswith("Execution Time")), "")
    nodes = "; ".join(f"{n}{f' x{c}' if c > 1 else ''}" for n, c in scans.items())
    return f"{nodes} | {execution}"


class Search:
    def __init__(self, http: httpx.Client, headers: dict[str, str], db: asyncpg.Connection):
        self.http, self.headers, self.db = http, headers, db

    def api(self, params: Params) -> float:
        started = time.perf_counter()
        response = self.http.get("/api/v1/decisions", params=params, headers=self.headers)
        took = time.perf_counter() - started
        response.raise_for_status()
        return took

    async def direct(self, sql: str, args: list[Any]) -> float:
        started = time.perf_counter()
        await self.db.fetch(sql, *args)
        return time.perf_counter() - started

    async def explain(self, sql: str, args: list[Any]) -> str:
        rows = await self.db.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
        return _plan_summary([row[0] for row in rows])

    def deep_cursor(self, params: Params) -> Params:
        """`params` with the cursor of page DEEP, reached by following next_cursor."""
        for _ in range(DEEP - 1):
            response = self.http.get("/api/v1/decisions", params=params, headers=self.headers)
            response.raise_for_status()
            params = {**params, "cursor": response.json()["next_cursor"]}
        return params


async def search_bench(
    search: Search, organization: uuid.UUID, shapes: dict[str, Callable[[int], Params]]
) -> list[Measured]:
    found = []
    for name, make in shapes.items():
        cases = [make(i) for i in range(SAMPLES)]
        for params in cases[:5]:  # warm the connection pools and statement caches
            search.api(params)
        api = [search.api(params) for params in cases]
        compiled = [_sql(params, organization) for params in cases]
        direct = [await search.direct(sql, args) for sql, args in compiled]
        plan = await search.explain(*compiled[0])
        found.append((name, _percentiles(api), _percentiles(direct), plan))
        print(f"  measured {name}", flush=True)
    return found


# --- replay ----------------------------------------------------------------------------


async def replay_window(
    db: asyncpg.Connection, organization: uuid.UUID
) -> tuple[datetime, list[Any], float]:
    """The time of the REPLAYED-th newest decision (the window's start), those inputs, and
    decisions/s of reading them alone (the columns the job reads, JSON decoded)."""
    started = time.perf_counter()
    rows = await db.fetch(
        "SELECT decision_id, time, outcome, input, result FROM decision_logs "
        "WHERE organization_id = $1 ORDER BY time DESC, decision_id DESC LIMIT $2",
        organization,
        REPLAYED,
    )
    inputs = [json.loads(row["input"]) for row in rows]
    results = [json.loads(row["result"]) for row in rows]
    rate = len(results) / (time.perf_counter() - started)
    return rows[-1]["time"], inputs, rate


def engine_alone(organization: uuid.UUID, inputs: list[Any]) -> float:
    compiled = compile_policy(
        PolicySet.from_sources([("draft.yaml", DRAFT)]), CompileContext(str(organization))
    )
    engine = DecisionEngine(compiled, cache_size=10_000)  # as the replay job builds it
    try:
        prepared = [_as_logged(i, str(organization)) for i in inputs]
        started = time.perf_counter()
        for decision_input in prepared:
            engine.decide(decision_input, dry_run=True)
        return len(prepared) / (time.perf_counter() - started)
    finally:
        engine.close()


def replay_api(accounts: Accounts, since: datetime, until: datetime) -> tuple[float, float, Any]:
    """(decisions/s from POST to completed, decisions/s of the job's own run, result)."""
    started = time.perf_counter()
    response = accounts.http.post(
        "/api/v1/policies/replay",
        json={"since": since.isoformat(), "until": until.isoformat(), "limit": REPLAYED},
        headers=accounts.owner,
    )
    response.raise_for_status()
    replay_id = response.json()["id"]
    while True:
        time.sleep(0.25)
        body = accounts.http.get(f"/api/v1/replays/{replay_id}", headers=accounts.owner).json()
        if body["status"] in ("completed", "failed"):
            break
    wall = time.perf_counter() - started
    if body["status"] != "completed":
        raise RuntimeError(f"replay failed: {body['error']}")
    run = (
        datetime.fromisoformat(body["finished_at"]) - datetime.fromisoformat(body["started_at"])
    ).total_seconds()
    return body["processed"] / wall, body["processed"] / run, body


# --- the run ---------------------------------------------------------------------------


def _shapes(plan: Load, day0: datetime, search: Search) -> dict[str, Callable[[int], Params]]:
    rng = random.Random(SEED + 1)
    people = plan.people[0]
    busy = people.principals[:50]
    days = [day0 + timedelta(days=d) for d in range(1, DAYS - 1)]
    globs = ["agent:shell-*", "agent:data-*", "agent:*-01*", "agent:support-1*"]
    reasons = ["paused", "budget exceeded", "business hours", "not allowed in prod"]

    def day(i: int) -> Params:
        start = days[i % len(days)]
        return {"since": start.isoformat(), "until": (start + timedelta(days=1)).isoformat()}

    deep_starts = [
        search.deep_cursor({"until": days[-1 - 2 * n].isoformat()}) for n in range(SAMPLES // 10)
    ]
    return {
        "unfiltered first page (baseline)": lambda i: {},
        "principal + one day": lambda i: {"principal": rng.choice(busy), **day(i)},
        "outcome=deny + resource glob": lambda i: {
            "outcome": "deny",
            "resource": globs[i % len(globs)],
        },
        "reason text": lambda i: {"reason": reasons[i % len(reasons)]},
        "decision id": lambda i: {"decision_id": rng.choice(plan.sample_ids)},
        f"page {DEEP} by next_cursor": lambda i: deep_starts[i % len(deep_starts)],
    }


def _report(
    load_rate: float,
    analyze_s: float,
    made: float,
    searches: list[Measured],
    replay: tuple[float, float, Any],
    alone: float,
    read: float,
) -> None:
    total = DECISIONS + DECISIONS // OTHER_SHARE
    print(
        f"\n{DECISIONS:,} decisions of one organisation + {DECISIONS // OTHER_SHARE:,} of another"
    )
    print(
        f"load (COPY, {COPY_CHUNK:,} rows a statement, rows made in this process): "
        f"{load_rate:,.0f} rows/s ({total:,} rows); making rows alone {made:,.0f} rows/s; "
        f"ANALYZE {analyze_s:.1f} s"
    )
    print(f"\nsearch, {SAMPLES} requests per shape, page of {PAGE}; goal p95 ≤ 100 ms (API)")
    header = ("shape", "API p50", "p95", "p99", "SQL p50", "p95", "p99", "goal")
    print("{:<34} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7}  {}".format(*header))
    for name, api, direct, _ in searches:
        met = "met" if api[1] <= GOAL_SEARCH_P95_MS else "MISSED"
        cells = " ".join(f"{v:>7.1f}" for v in api)
        sql = " ".join(f"{v:>7.1f}" for v in direct)
        print(f"{name:<34} {cells} ms {sql} ms  {met}")
    print("(API: HTTP request to the control plane; SQL: the same statement over asyncpg)")
    print("\nplans (EXPLAIN ANALYZE of the first request of each shape):")
    for name, _, _, plan in searches:
        print(f"  {name}: {plan}")
    wall_rate, job_rate, body = replay
    counts = body["result"]["counts"]
    met = "met" if wall_rate >= GOAL_REPLAY_PER_S else "MISSED"
    print(f"\nreplay of {body['processed']:,} decisions; goal ≥ {GOAL_REPLAY_PER_S:,.0f}/s")
    print(f"  POST → completed         : {wall_rate:>8,.0f} decisions/s  {met}")
    print(f"  the job (started→finished): {job_rate:>8,.0f} decisions/s")
    print(f"  engine decide alone       : {alone:>8,.0f} decisions/s (same inputs, in-process)")
    print(f"  reading the window alone  : {read:>8,.0f} decisions/s (one query, JSON decoded)")
    print(f"  job ÷ engine alone        : {job_rate / alone:>8.2f}")
    print(f"  outcome transitions       : {counts}")


def main() -> None:
    replica = None
    with throwaway_database() as database, tempfile.TemporaryDirectory() as tmp:
        url = database.url
        try:
            replica = procs.ControlPlane.configured(
                Path(tmp) / "cp",
                database_url=url,
                redis_url=REDIS_URL,
                redis_prefix=f"kaizen-bench-{secrets.token_hex(3)}:",
                master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            )
            replica.start()  # runs the migrations
            accounts = Accounts(replica.url)
            accounts.policies(PUBLISHED)
            accounts.http.post(
                "/api/v1/policies/publish", json={}, headers=accounts.owner
            ).raise_for_status()
            accounts.policies(DRAFT)
            end = datetime.now(UTC) - timedelta(minutes=1)
            plan = Load(accounts.organization, accounts.other, accounts.gateway, end)
            made = generation_rate()
            print(f"loading {plan.total:,} rows ...", flush=True)
            load_rate, analyze_s = asyncio.run(load(url, plan))
            accounts.login()
            asyncio.run(_measure(url, accounts, plan, load_rate, analyze_s, made, end))
        finally:
            if replica is not None and replica.process is not None:
                replica.stop()


async def _measure(
    url: str,
    accounts: Accounts,
    plan: Load,
    load_rate: float,
    analyze_s: float,
    made: float,
    end: datetime,
) -> None:
    db = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        search = Search(accounts.http, accounts.auditor, db)
        day0 = plan.start.replace(hour=0, minute=0, second=0, microsecond=0)
        shapes = _shapes(plan, day0, search)
        searches = await search_bench(search, accounts.organization, shapes)
        since, inputs, read = await replay_window(db, accounts.organization)
    finally:
        await db.close()
    alone = engine_alone(accounts.organization, inputs)
    replay = replay_api(accounts, since, end + timedelta(minutes=1))
    _report(load_rate, analyze_s, made, searches, replay, alone, read)


if __name__ == "__main__":
    main()
