"""The offline demo provider (gateways/providers/demo.py): an echo, and one question it
"understands" — `sql: <statement>` becomes an ordinary tool call to the agent's SQL
connector tool, whose answer it then quotes."""

from __future__ import annotations

import json

from gateways import connector_calls  # noqa: TID251  (the gateway under test)
from gateways.providers import ChatRequest, ChatResult, TextDelta, ToolSpec  # noqa: TID251
from gateways.providers.demo import PREFIX, DemoProvider  # noqa: TID251
from policy.workloads import ConnectorTool

SQL_TOOL = connector_calls.tool_spec(ConnectorTool("shop"), None)
OTHER_TOOL = ToolSpec("weather", "GET the weather", {"type": "object"})


def ask(text: str, *tools: ToolSpec) -> ChatRequest:
    return ChatRequest("demo", [{"role": "user", "content": text}], tools=tools)


async def test_sql_input_becomes_a_call_of_the_agents_sql_tool() -> None:
    result = await DemoProvider().complete(
        ask("  SQL: SELECT customer FROM orders ", OTHER_TOOL, SQL_TOOL)
    )
    assert result.text == ""
    (call,) = result.tool_calls
    assert (call.name, dict(call.arguments)) == (
        "sql_query_shop",
        {"sql": "SELECT customer FROM orders"},
    )


async def test_the_tools_answer_is_quoted_row_by_row() -> None:
    answer = {
        "operation": "read",
        "statement": "select",
        "tables": ["public.orders"],
        "columns": ["customer", "total"],
        "rows": [["ada", "10.50"], ["bob", "20.00"]],
        "truncated": True,
        "limit": "max_rows=2",
        "status": None,
        "note": "result cut at max_rows=2; 2 rows returned",
    }
    request = ask("sql: SELECT customer, total FROM orders", SQL_TOOL)
    request.messages.append(
        {"role": "tool", "name": "sql_query_shop", "content": json.dumps(answer)}
    )
    result = await DemoProvider().complete(request)
    assert result.tool_calls == ()
    assert result.text == (
        f"{PREFIX} sql_query_shop answered: 2 row(s) from public.orders; "
        "customer=ada, total=10.50; customer=bob, total=20.00; "
        "result cut at max_rows=2; 2 rows returned"
    )


async def test_a_tool_error_is_quoted_as_it_came() -> None:
    request = ask("sql: DROP TABLE orders", SQL_TOOL)
    refused = "error: the statement was refused: DDL is not run"
    request.messages.append({"role": "tool", "name": "sql_query_shop", "content": refused})
    result = await DemoProvider().complete(request)
    assert result.text == f"{PREFIX} sql_query_shop answered: {refused}"


async def test_without_a_sql_tool_it_says_so_and_calls_nothing() -> None:
    result = await DemoProvider().complete(ask("sql: SELECT 1", OTHER_TOOL))
    assert result.tool_calls == ()
    assert "no connector tool that runs SQL" in result.text


async def test_anything_else_is_still_an_echo_streamed_word_by_word() -> None:
    demo = DemoProvider()
    request = ask("hello sql: world", SQL_TOOL)
    events = [event async for event in demo.stream(request)]
    final = events[-1]
    assert isinstance(final, ChatResult)
    assert final.tool_calls == ()
    assert final.text == f"{PREFIX} You said: hello sql: world"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == final.text


async def test_a_streamed_tool_call_has_no_text_deltas() -> None:
    events = [event async for event in DemoProvider().stream(ask("sql: SELECT 1", SQL_TOOL))]
    (final,) = events
    assert isinstance(final, ChatResult)
    assert final.tool_calls[0].name == "sql_query_shop"
