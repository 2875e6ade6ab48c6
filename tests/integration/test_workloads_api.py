"""Agents, pipelines and deployments (issue 5): versioned configs, validation with locations,
and deployments that reach gateways through the tenant's signed bundle."""

from __future__ import annotations

from typing import Any

import httpx
import yaml

from gateways.deployments import deployments_from_bundle  # noqa: TID251  (what a gateway loads)
from policy.bundles.bundle import VerifiedBundle, load_bundle
from tests.conftest import Account, member, signup

RESEARCHER = """\
apiVersion: kaizen.studio/v1
kind: Agent
metadata: {name: researcher, description: Finds facts}
spec:
  model: {provider: demo, name: demo}
  system_prompt: You research.
"""
SUPPORT_BOT = """\
kind: Agent
metadata: {name: support-bot}
spec:
  model: {provider: openai, name: gpt-4o-mini, parameters: {temperature: 0.2}}
  system_prompt: You help customers.
  tools:
    - agent: researcher
  cost_estimate_usd: 0.002
"""
PIPELINE = """\
kind: Pipeline
metadata: {name: triage}
spec:
  pattern: sequential
  agents: [researcher, support-bot]
  limits: {max_steps: 4}
"""
POLICY = "kind: RolePolicy\nmetadata: {name: extra-roles}\nspec:\n  roles: [{name: reader}]\n"


async def _post(
    client: httpx.AsyncClient, who: Account, collection: str, source: str
) -> httpx.Response:
    return await client.post(f"/api/v1/{collection}", json={"source": source}, headers=who.headers)


async def _created(
    client: httpx.AsyncClient, who: Account, collection: str, source: str
) -> dict[str, Any]:
    response = await _post(client, who, collection, source)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _gateway(client: httpx.AsyncClient, who: Account, name: str = "edge") -> dict[str, Any]:
    response = await client.post(
        "/api/v1/gateways",
        json={"name": name, "environment": "prod", "url": f"http://{name}.test:8080/"},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _deploy(
    client: httpx.AsyncClient, who: Account, gateway_id: str, kind: str, name: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/deployments",
        json={"gateway_id": gateway_id, "kind": kind, "name": name, **extra},
        headers=who.headers,
    )


async def _publish(client: httpx.AsyncClient, who: Account) -> int:
    created = await client.post("/api/v1/policies", json={"source": POLICY}, headers=who.headers)
    assert created.status_code == 201, created.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=who.headers)
    assert published.status_code == 201, published.text
    revision: int = published.json()["revision"]
    return revision


async def _bundle(client: httpx.AsyncClient, who: Account) -> VerifiedBundle:
    """Download the organisation's bundle and verify it as a sidecar or gateway would."""
    response = await client.get(
        f"/api/v1/bundles/{who.organization_id}/bundle.tar.gz", headers=who.headers
    )
    assert response.status_code == 200, response.text
    jwks = (await client.get(f"/api/v1/bundles/{who.organization_id}/jwks.json")).json()
    bundle = load_bundle(response.content, jwks, scope=who.organization_id)
    assert bundle.revision == response.headers["x-kaizen-bundle-revision"]
    return bundle


def _line_and_column(source: str, needle: str) -> tuple[int, int]:
    for number, line in enumerate(source.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the source")


async def test_agents_are_versioned_by_name_and_export_round_trips(
    client: httpx.AsyncClient, owner: Account
) -> None:
    first = await _created(client, owner, "agents", RESEARCHER + "---\n" + SUPPORT_BOT)
    assert first["created"] == ["researcher", "support-bot"]
    by_name = {a["name"]: a for a in first["items"]}
    bot = by_name["support-bot"]
    assert bot["latest_version"] == 1
    assert bot["config"]["spec"]["tools"] == [{"agent": "researcher"}]
    assert by_name["researcher"]["description"] == "Finds facts"

    changed = SUPPORT_BOT.replace("You help customers.", "You help customers politely.")
    second = await _created(client, owner, "agents", RESEARCHER + "---\n" + changed)
    assert (second["updated"], second["unchanged"]) == (["support-bot"], ["researcher"])

    got = (await client.get(f"/api/v1/agents/{bot['id']}", headers=owner.headers)).json()
    assert got["latest_version"] == 2
    assert got["config"]["spec"]["system_prompt"] == "You help customers politely."
    versions = await client.get(f"/api/v1/agents/{bot['id']}/versions", headers=owner.headers)
    assert [v["version"] for v in versions.json()["items"]] == [2, 1]
    old = (await client.get(f"/api/v1/agents/{bot['id']}/versions/1", headers=owner.headers)).json()
    assert old["config"]["spec"]["system_prompt"] == "You help customers."
    assert old["source"] == SUPPORT_BOT  # the document as it was sent
    missing = await client.get(f"/api/v1/agents/{bot['id']}/versions/9", headers=owner.headers)
    assert missing.status_code == 404

    exported = await client.get(f"/api/v1/agents/{bot['id']}/export", headers=owner.headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(exported.text) == got["config"]
    again = await _created(client, owner, "agents", exported.text)
    assert again["unchanged"] == ["support-bot"]  # the export is the same config
    old_export = await client.get(
        f"/api/v1/agents/{bot['id']}/export?version=1", headers=owner.headers
    )
    assert yaml.safe_load(old_export.text)["spec"]["system_prompt"] == "You help customers."

    listed = (await client.get("/api/v1/agents?limit=1", headers=owner.headers)).json()
    assert len(listed["items"]) == 1
    assert listed["next_cursor"]
    rest = await client.get(
        f"/api/v1/agents?limit=1&cursor={listed['next_cursor']}", headers=owner.headers
    )
    assert {listed["items"][0]["name"], rest.json()["items"][0]["name"]} == {
        "researcher",
        "support-bot",
    }
    assert (await client.get("/api/v1/pipelines", headers=owner.headers)).json()["items"] == []

    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    actions = [e["action"] for e in events]
    assert actions.count("agent.create") == 2
    assert actions.count("agent.update") == 1


async def test_invalid_configs_are_422_with_field_line_and_column(
    client: httpx.AsyncClient, owner: Account
) -> None:
    bad = SUPPORT_BOT.replace("provider: openai", "provider: gpt")
    response = await _post(client, owner, "agents", RESEARCHER + "---\n" + bad)
    assert response.status_code == 422
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == "spec.model.provider"
    assert detail["document"] == 1
    assert (detail["line"], detail["column"]) == _line_and_column(
        RESEARCHER + "---\n" + bad, "gpt,"
    )
    assert "openai" in detail["message"]  # it names the allowed providers

    wrong_kind = await _post(client, owner, "agents", PIPELINE)
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["error"]["details"][0]["field"] == "kind"
    assert "/api/v1/pipelines" in wrong_kind.json()["error"]["details"][0]["message"]

    syntax = await _post(client, owner, "agents", "kind: Agent\nmetadata: {name: [x\n")
    assert syntax.status_code == 422
    assert syntax.json()["error"]["details"][0]["line"] is not None

    for body in ({"source": ""}, {"source": "# nothing\n"}, {}, {"source": 3}):
        refused = await client.post("/api/v1/agents", json=body, headers=owner.headers)
        assert refused.status_code == 422, (body, refused.text)
    # Nothing was stored by any of these.
    assert (await client.get("/api/v1/agents", headers=owner.headers)).json()["items"] == []


async def test_references_to_missing_agents_are_422_naming_the_field(
    client: httpx.AsyncClient, owner: Account
) -> None:
    alone = await _post(client, owner, "agents", SUPPORT_BOT)
    assert alone.status_code == 422
    (detail,) = alone.json()["error"]["details"]
    assert detail["field"] == "spec.tools[0].agent"
    assert (detail["line"], detail["column"]) == _line_and_column(SUPPORT_BOT, "researcher")

    await _created(client, owner, "agents", RESEARCHER)
    pipeline = PIPELINE.replace("support-bot]", "ghost]")
    response = await _post(client, owner, "pipelines", pipeline)
    assert response.status_code == 422
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == "spec.agents[1]"
    assert "ghost" in detail["message"]
    assert (detail["line"], detail["column"]) == _line_and_column(pipeline, "ghost")

    router = (
        "kind: Pipeline\nmetadata: {name: desk}\nspec:\n  pattern: router\n"
        "  router: researcher\n  routes: {billing: nobody}\n"
    )
    routed = await _post(client, owner, "pipelines", router)
    assert routed.status_code == 422
    assert routed.json()["error"]["details"][0]["field"] == "spec.routes.billing"

    still_missing = await _post(client, owner, "pipelines", PIPELINE)  # support-bot: not yet
    assert still_missing.status_code == 422
    await _created(client, owner, "agents", SUPPORT_BOT)
    created = await _created(client, owner, "pipelines", PIPELINE)
    assert created["items"][0]["config"]["spec"]["pattern"] == "sequential"

    # An agent nothing deploys may be deleted; deploying what still names it is then a 422.
    agents = (await client.get("/api/v1/agents", headers=owner.headers)).json()["items"]
    researcher = next(a["id"] for a in agents if a["name"] == "researcher")
    deleted = await client.delete(f"/api/v1/agents/{researcher}", headers=owner.headers)
    assert deleted.status_code == 204
    gateway = await _gateway(client, owner)
    orphan = await _deploy(client, owner, gateway["id"], "pipeline", "triage")
    assert orphan.status_code == 422
    assert "researcher" in orphan.json()["error"]["message"]
    assert orphan.json()["error"]["details"][0]["field"] == "name"
    listed = await client.get("/api/v1/deployments", headers=owner.headers)
    assert listed.json()["items"] == []


async def test_deploy_signs_the_agent_into_the_bundle_and_undeploy_removes_it(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _publish(client, owner)
    gateway = await _gateway(client, owner)
    other_gateway = await _gateway(client, owner, "other")
    # each registration re-signed the bundle (the gateway's MCP URL)
    first_revision = (await _bundle(client, owner)).revision_number
    agents = await _created(client, owner, "agents", RESEARCHER + "---\n" + SUPPORT_BOT)
    bot_id = {a["name"]: a["id"] for a in agents["items"]}["support-bot"]
    pipeline = (await _created(client, owner, "pipelines", PIPELINE))["items"][0]

    deployed = await _deploy(client, owner, gateway["id"], "agent", "support-bot")
    assert deployed.status_code == 201, deployed.text
    body = deployed.json()
    url = "http://edge.test:8080"
    assert body["endpoints"] == {
        "api": f"{url}/v1/agents/support-bot/invoke",
        "cli": f"kaizen-studio call support-bot --gateway {url} --input '<input>'",
        "mcp": f"{url}/mcp",
    }
    assert (body["version"], body["requires"]) == (1, {"researcher": 1})
    assert body["bundle_revision"] == first_revision + 1

    bundle = await _bundle(client, owner)
    assert bundle.revision_number == body["bundle_revision"]
    carried = bundle.compiled.kaizen["agents"]
    assert carried["support-bot"]["gateways"] == [gateway["id"]]
    assert carried["support-bot"]["spec"]["model"]["name"] == "gpt-4o-mini"
    assert carried["researcher"]["gateways"] == []  # rides along as a tool of support-bot
    served = deployments_from_bundle(bundle, gateway["id"])
    assert sorted(served.agents) == ["researcher", "support-bot"]
    assert served.agents["support-bot"].referenced_agents() == ("researcher",)
    assert deployments_from_bundle(bundle, other_gateway["id"]).agents == {}

    run = await _deploy(client, owner, other_gateway["id"], "pipeline", "triage")
    assert run.status_code == 201, run.text
    assert run.json()["endpoints"]["api"] == "http://other.test:8080/v1/pipelines/triage/run"
    assert run.json()["endpoints"]["cli"] == (
        "kaizen-studio call triage --pipeline --gateway http://other.test:8080 --input '<input>'"
    )
    on_other = deployments_from_bundle(await _bundle(client, owner), other_gateway["id"])
    assert list(on_other.pipelines) == ["triage"]
    assert sorted(on_other.agents) == ["researcher", "support-bot"]

    detail = (await client.get(f"/api/v1/gateways/{gateway['id']}", headers=owner.headers)).json()
    assert [(d["kind"], d["name"]) for d in detail["deployments"]] == [("agent", "support-bot")]
    listed = await client.get(
        f"/api/v1/deployments?gateway_id={other_gateway['id']}", headers=owner.headers
    )
    assert [d["name"] for d in listed.json()["items"]] == ["triage"]

    # Deployed (and needed by the deployed pipeline): it cannot be deleted.
    refused = await client.delete(f"/api/v1/agents/{bot_id}", headers=owner.headers)
    assert refused.status_code == 409
    refused = await client.delete(f"/api/v1/pipelines/{pipeline['id']}", headers=owner.headers)
    assert refused.status_code == 409

    for deployment in (body, run.json()):
        gone = await client.delete(f"/api/v1/deployments/{deployment['id']}", headers=owner.headers)
        assert gone.status_code == 204
    after = await _bundle(client, owner)
    assert after.revision_number == body["bundle_revision"] + 3
    assert after.compiled.kaizen["agents"] == {}
    assert after.compiled.kaizen["pipelines"] == {}
    assert deployments_from_bundle(after, gateway["id"]).agents == {}
    again = await client.get(f"/api/v1/deployments/{body['id']}", headers=owner.headers)
    assert again.status_code == 404

    for path in (f"/api/v1/pipelines/{pipeline['id']}", f"/api/v1/agents/{bot_id}"):
        assert (await client.delete(path, headers=owner.headers)).status_code == 204
        assert (await client.get(path, headers=owner.headers)).status_code == 404
    actions = [
        e["action"]
        for e in (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    ]
    assert actions.count("deployment.create") == 2
    assert actions.count("deployment.delete") == 2
    assert {"agent.delete", "pipeline.delete", "bundle.refresh"} <= set(actions)


async def test_a_deployment_before_any_publish_rides_the_first_one(
    client: httpx.AsyncClient, owner: Account
) -> None:
    gateway = await _gateway(client, owner)
    await _created(client, owner, "agents", RESEARCHER)
    deployed = await _deploy(client, owner, gateway["id"], "agent", "researcher")
    assert deployed.status_code == 201, deployed.text
    assert deployed.json()["bundle_revision"] is None
    none_yet = await client.get(
        f"/api/v1/bundles/{owner.organization_id}/bundle.tar.gz", headers=owner.headers
    )
    assert none_yet.status_code == 404

    await _publish(client, owner)
    served = deployments_from_bundle(await _bundle(client, owner), gateway["id"])
    assert list(served.agents) == ["researcher"]


async def test_one_version_per_name_and_moving_a_deployment(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _publish(client, owner)
    edge, other = await _gateway(client, owner), await _gateway(client, owner, "other")
    await _created(client, owner, "agents", RESEARCHER)
    await _created(client, owner, "agents", RESEARCHER.replace("You research.", "v2"))

    first = await _deploy(client, owner, edge["id"], "agent", "researcher", version=1)
    assert first.status_code == 201
    assert first.json()["version"] == 1
    same = await _deploy(client, owner, edge["id"], "agent", "researcher", version=1)
    assert same.status_code == 409
    clash = await _deploy(client, owner, other["id"], "agent", "researcher")  # latest: 2
    assert clash.status_code == 409
    assert "version 1" in clash.json()["error"]["message"]

    moved = await _deploy(client, owner, edge["id"], "agent", "researcher", version=2)
    assert moved.status_code == 200, moved.text
    assert moved.json()["id"] == first.json()["id"]
    assert moved.json()["version"] == 2
    bundle = await _bundle(client, owner)
    assert bundle.compiled.kaizen["agents"]["researcher"]["spec"]["system_prompt"] == "v2"
    assert (await _deploy(client, owner, other["id"], "agent", "researcher")).status_code == 201

    for bad, field in (
        ({"version": 7}, "version"),
        ({"name": "nobody"}, "name"),
        ({"kind": "robot"}, "kind"),
        ({"name": "bad name!"}, "name"),
        ({"version": 0}, "version"),
    ):
        response = await client.post(
            "/api/v1/deployments",
            json={"gateway_id": edge["id"], "kind": "agent", "name": "researcher", **bad},
            headers=owner.headers,
        )
        assert response.status_code in (404, 422), (bad, response.text)
        assert response.json()["error"]["details"][0]["field"] == field, bad


async def test_roles_decide_who_writes_and_deploys(
    client: httpx.AsyncClient, owner: Account
) -> None:
    viewer = await member(client, owner, "viewer")
    developer = await member(client, owner, "developer")
    gateway = await _gateway(client, owner)

    assert (await _post(client, viewer, "agents", RESEARCHER)).status_code == 403
    created = await _created(client, developer, "agents", RESEARCHER)
    agent_id = created["items"][0]["id"]
    assert (await client.get(f"/api/v1/agents/{agent_id}", headers=viewer.headers)).is_success
    assert (await _deploy(client, viewer, gateway["id"], "agent", "researcher")).status_code == 403
    deployed = await _deploy(client, developer, gateway["id"], "agent", "researcher")
    assert deployed.status_code == 201
    listed = await client.get("/api/v1/deployments", headers=viewer.headers)
    assert [d["name"] for d in listed.json()["items"]] == ["researcher"]
    deployment = f"/api/v1/deployments/{deployed.json()['id']}"
    assert (await client.delete(deployment, headers=viewer.headers)).status_code == 403
    assert (await client.delete(deployment, headers=developer.headers)).status_code == 204
    removed = await client.delete(f"/api/v1/agents/{agent_id}", headers=viewer.headers)
    assert removed.status_code == 403


async def test_another_tenants_workloads_and_gateways_are_404(
    client: httpx.AsyncClient, owner: Account
) -> None:
    gateway = await _gateway(client, owner)
    agent = (await _created(client, owner, "agents", RESEARCHER))["items"][0]
    mine = await _deploy(client, owner, gateway["id"], "agent", "researcher")
    assert mine.status_code == 201

    other = await signup(client, "Other Corp")
    theirs = await _gateway(client, other)
    # Their gateway id with an agent of their own: 404 on our gateway.
    await _created(client, other, "agents", RESEARCHER)
    foreign = await _deploy(client, other, gateway["id"], "agent", "researcher")
    assert foreign.status_code == 404
    assert foreign.json()["error"]["details"] == [{"field": "gateway_id"}]
    for url in (
        f"/api/v1/agents/{agent['id']}",
        f"/api/v1/agents/{agent['id']}/versions",
        f"/api/v1/agents/{agent['id']}/export",
        f"/api/v1/deployments/{mine.json()['id']}",
    ):
        assert (await client.get(url, headers=other.headers)).status_code == 404, url
    assert (
        await client.delete(f"/api/v1/deployments/{mine.json()['id']}", headers=other.headers)
    ).status_code == 404
    # An agent id is not a pipeline id, even in its own organisation.
    assert (
        await client.get(f"/api/v1/pipelines/{agent['id']}", headers=owner.headers)
    ).status_code == 404
    # Their own agent is deployable to their own gateway, and lists apart from ours.
    assert (await _deploy(client, other, theirs["id"], "agent", "researcher")).status_code == 201
    ours = (await client.get("/api/v1/deployments", headers=owner.headers)).json()["items"]
    assert [d["gateway_id"] for d in ours] == [gateway["id"]]


async def test_deleting_a_gateway_resigns_the_bundle_without_its_deployments(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _publish(client, owner)
    gateway = await _gateway(client, owner)
    await _created(client, owner, "agents", RESEARCHER + "---\n" + SUPPORT_BOT)
    deployed = await _deploy(client, owner, gateway["id"], "agent", "support-bot")
    assert deployed.status_code == 201, deployed.text
    assert "support-bot" in (await _bundle(client, owner)).compiled.kaizen["agents"]

    gone = await client.delete(f"/api/v1/gateways/{gateway['id']}", headers=owner.headers)
    assert gone.status_code == 204
    after = await _bundle(client, owner)
    assert after.revision_number == deployed.json()["bundle_revision"] + 1
    assert after.compiled.kaizen["agents"] == {}
    listed = await client.get("/api/v1/deployments", headers=owner.headers)
    assert listed.json()["items"] == []

    empty = await _gateway(client, owner, "empty")
    before = (await _bundle(client, owner)).revision_number
    assert (
        await client.delete(f"/api/v1/gateways/{empty['id']}", headers=owner.headers)
    ).status_code == 204
    resigned = await _bundle(client, owner)  # without the gateway's MCP URL
    assert resigned.revision_number == before + 1
    assert "mcp_resources" not in resigned.compiled.kaizen
