"""The gateway's connector tool (gateways/connector_calls.py) in the order it promises:
parse, refuse what it will not run, ask the authorizer for every table, read the password,
run. The authorizer here records what it is asked and answers as told; the real sidecar
deciding these calls is tests/e2e/test_connectors_e2e.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateways import connector_calls  # noqa: TID251  (the gateway under test)
from gateways.deployments import Deployments  # noqa: TID251
from gateways.errors import Forbidden, ToolError  # noqa: TID251
from gateways.executor import Executor, Run  # noqa: TID251
from gateways.providers import PriceTable, ProviderRegistry  # noqa: TID251
from gateways.providers.secrets import EnvSecretResolver  # noqa: TID251
from policy.connectors import ConnectionSettings
from policy.net.outbound import OutboundGuard
from policy.workloads import AgentConfig, ConnectorTool, Limits, parse_workload_source
from tests.integration.connector_support import SeededDatabase, seeded_postgres

__all__ = ["seeded_postgres"]
TOOL = ConnectorTool("warehouse")
GUARD = OutboundGuard.from_setting("127.0.0.1/32")


class Authorizer:
    """Records each connector check; refuses the tables in `deny`."""

    def __init__(self, deny: frozenset[str] = frozenset()) -> None:
        self.asked: list[tuple[str, str | None]] = []
        self.deny = deny

    async def check(self, caller: str, agent: str) -> None:
        raise AssertionError("no agent is called here")

    async def check_connector(
        self, caller: str, connector: str, operation: str, table: str | None, sql: str
    ) -> None:
        self.asked.append((operation, table))
        if table in self.deny:
            raise Forbidden(f"{caller}: denied {operation} table:{table}")


def _deployments(db: SeededDatabase, **overrides: Any) -> Deployments:
    settings = ConnectionSettings.from_dict({"type": db.type, **db.settings(**overrides)})
    return Deployments("org", "1", "k", connectors={"warehouse": settings})


async def _call(
    sql: str,
    deployments: Deployments,
    authorizer: Authorizer | None,
    environ: dict[str, str],
) -> str:
    run = Run(Limits(), PriceTable())
    run.nested = authorizer
    return await connector_calls.call(
        TOOL,
        {"sql": sql},
        caller="agent analyst",
        deployments=deployments,
        run=run,
        secrets=EnvSecretResolver(environ=environ),
        guard=GUARD,
    )


def _env(db: SeededDatabase) -> dict[str, str]:
    return {"KAIZEN_SECRET_CONNECTOR_WAREHOUSE_PASSWORD": db.password}


async def test_every_table_is_asked_before_the_statement_runs(
    seeded_postgres: SeededDatabase,
) -> None:
    authorizer = Authorizer()
    answer = await _call(
        "SELECT o.customer, c.name FROM orders o JOIN customers c ON c.name = o.customer",
        _deployments(seeded_postgres),
        authorizer,
        _env(seeded_postgres),
    )
    assert authorizer.asked == [("read", "public.customers"), ("read", "public.orders")]
    assert json.loads(answer)["rows"][0] == ["ada", "ada"]


async def test_one_denied_table_stops_the_call(seeded_postgres: SeededDatabase) -> None:
    authorizer = Authorizer(deny=frozenset({"public.salaries"}))
    with pytest.raises(Forbidden, match=r"table:public\.salaries"):
        await _call(
            "SELECT * FROM orders, salaries",
            _deployments(seeded_postgres),
            authorizer,
            {},  # no password either: the refusal comes before it is read
        )
    assert authorizer.asked == [("read", "public.orders"), ("read", "public.salaries")]


async def test_a_write_asks_write_of_its_target_and_read_of_what_it_reads(
    seeded_postgres: SeededDatabase,
) -> None:
    authorizer = Authorizer(deny=frozenset({"public.salaries"}))
    with pytest.raises(Forbidden):
        await _call(
            "INSERT INTO customers SELECT id, name FROM salaries",
            _deployments(seeded_postgres, read_only=False),
            authorizer,
            {},
        )
    assert authorizer.asked == [("write", "public.customers"), ("read", "public.salaries")]


async def test_a_statement_without_tables_is_still_asked(
    seeded_postgres: SeededDatabase,
) -> None:
    authorizer = Authorizer()
    answer = await _call(
        "SELECT 1 AS one", _deployments(seeded_postgres), authorizer, _env(seeded_postgres)
    )
    assert authorizer.asked == [("read", None)]
    assert json.loads(answer)["rows"] == [[1]]


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT 1; SELECT 2", "2 statements"),
        ("DROP TABLE orders", "statement type DROP"),
        ("DELETE FROM orders", "read-only"),  # the connector is read-only (the default)
    ],
)
async def test_what_is_refused_goes_back_to_the_model_unasked(
    seeded_postgres: SeededDatabase, sql: str, says: str
) -> None:
    authorizer = Authorizer()
    answer = await _call(sql, _deployments(seeded_postgres), authorizer, {})
    assert answer.startswith("error: ")
    assert says in answer
    assert authorizer.asked == []


async def test_no_sidecar_means_no_connector_call(seeded_postgres: SeededDatabase) -> None:
    with pytest.raises(Forbidden, match="no sidecar"):
        await _call("SELECT * FROM orders", _deployments(seeded_postgres), None, {})


async def test_a_connector_the_bundle_lacks_fails_the_call(
    seeded_postgres: SeededDatabase,
) -> None:
    with pytest.raises(ToolError, match="not in this gateway's bundle"):
        await _call("SELECT 1", Deployments("org", "1", "k"), Authorizer(), {})


async def test_a_missing_or_wrong_password_fails_clearly_without_showing_it(
    seeded_postgres: SeededDatabase,
) -> None:
    with pytest.raises(ToolError, match="KAIZEN_SECRET_CONNECTOR_WAREHOUSE_PASSWORD"):
        await _call("SELECT 1", _deployments(seeded_postgres), Authorizer(), {})
    # PostgreSQL here trusts 127.0.0.1; a closed port stands for a connector it cannot reach.
    with pytest.raises(ToolError) as failed:
        await _call(
            "SELECT 1",
            _deployments(seeded_postgres, port=9),
            Authorizer(),
            {"KAIZEN_SECRET_CONNECTOR_WAREHOUSE_PASSWORD": "s3cret-not-shown"},
        )
    assert failed.value.details["code"] == "unreachable"
    assert "s3cret-not-shown" not in str(failed.value.message) + str(failed.value.details)


async def test_sql_the_database_refuses_goes_back_to_the_model(
    seeded_postgres: SeededDatabase,
) -> None:
    answer = await _call(
        "SELECT no_such_column FROM orders",
        _deployments(seeded_postgres),
        Authorizer(),
        _env(seeded_postgres),
    )
    assert answer.startswith("error: query_failed: PostgreSQL:")


DEMO_ANALYST = """\
kind: Agent
metadata: {name: analyst}
spec:
  model: {provider: demo, name: demo}
  tools:
    - connector: {name: warehouse, operations: [sql.query]}
"""


async def test_the_demo_models_sql_takes_the_same_path_as_a_real_models(
    seeded_postgres: SeededDatabase,
) -> None:
    """The README tour's offline model: its tool call runs through the executor's loop and
    this module, every table asked, a denied one stopping the call (no demo exception)."""
    (agent,) = parse_workload_source(DEMO_ANALYST)
    assert isinstance(agent, AgentConfig)
    deployments = _deployments(seeded_postgres)
    secrets = EnvSecretResolver(environ=_env(seeded_postgres))
    executor = Executor(ProviderRegistry(secrets, GUARD), PriceTable())
    authorizer = Authorizer(deny=frozenset({"public.salaries"}))
    run = Run(Limits(), PriceTable())
    run.nested = authorizer
    answer = await executor.call_agent(
        deployments, agent, "sql: SELECT customer, total FROM orders ORDER BY id", run
    )
    assert "customer=ada, total=10.50; customer=bob, total=20.00" in answer
    assert authorizer.asked == [("read", "public.orders")]

    run = Run(Limits(), PriceTable())
    run.nested = authorizer
    with pytest.raises(Forbidden, match=r"table:public\.salaries"):
        await executor.call_agent(deployments, agent, "sql: SELECT * FROM salaries", run)
    assert authorizer.asked[-1] == ("read", "public.salaries")
