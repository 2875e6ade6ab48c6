"""Stable, readable OpenAPI operation ids: `<tag>.<action>` (`policies.publish`,
`gateways.rotate_credential`), so generated clients get method names a person would write.

The action is the route function's name without the tag's noun (`create_gateway` under
`gateways` is `gateways.create`; `list_agent_versions` under `agents` is
`agents.list_versions`); the noun stays when it is the verb itself (`replay_set`). A route's
function name is its contract: renaming one changes its id, which
tests/integration/test_openapi_names.py pins.
"""

from __future__ import annotations

from fastapi.routing import APIRoute


def _nouns(tag: str) -> list[list[str]]:
    """The tag's plural and singular, as token lists (`api-keys` → [api, keys], [api, key])."""
    plural = tag.replace("-", "_").split("_")
    last = plural[-1]
    singular = last[:-3] + "y" if last.endswith("ies") else last.removesuffix("s")
    return [plural, [*plural[:-1], singular]]


def action(tag: str, name: str) -> str:
    tokens = name.split("_")
    for noun in _nouns(tag):
        width = len(noun)
        for at in range(1, len(tokens) - width + 1):  # never the first token (the verb)
            if tokens[at : at + width] == noun:
                return "_".join(tokens[:at] + tokens[at + width :])
    return name


def operation_id(route: APIRoute) -> str:
    tag = str(route.tags[0]) if route.tags else "system"
    return f"{tag.replace('-', '_')}.{action(tag, route.name)}"
