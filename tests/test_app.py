"""Schema drift, health and readiness."""

import asyncio
import dataclasses
from pathlib import Path

import httpx
from arq.worker import Worker
from pymongo import AsyncMongoClient

from pocketquant.api.app import create_app
from pocketquant.api.schema import schema_sdl
from pocketquant.api.serving import serve
from pocketquant.resources import Resources

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == schema_sdl(), "schema.graphql is stale: run `pocketquant export-schema -o schema.graphql`"


async def test_health_and_ready_report_every_component(api_url: str, worker: Worker, admin_key: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"}) as http:
        for _ in range(100):  # the worker writes its first report right after start-up
            health = (await http.get("/health")).json()
            if health["components"]["worker"]["ok"]:
                break
            await asyncio.sleep(0.05)
        assert health["status"] == "ok"
        assert {k: v["ok"] for k, v in health["components"].items()} == {"mongodb": True, "redis": True, "worker": True}
        assert "j_complete" in health["components"]["worker"]["report"]
        response = await http.get("/ready")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"
    async with httpx.AsyncClient(base_url=api_url) as http:  # anonymous: states, not internals
        health = (await http.get("/health")).json()
        assert health["components"]["worker"] == {"ok": True}


async def test_ready_is_503_when_mongodb_is_down_and_reports_a_missing_worker(
    resources: Resources, admin_key: str
) -> None:
    dead_mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        "mongodb://127.0.0.1:9/?directConnection=true", serverSelectionTimeoutMS=200
    )
    app = create_app(resources.settings, dataclasses.replace(resources, mongo=dead_mongo))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        anonymous = await http.get("/ready")
        admin = await http.get("/ready", headers={"Authorization": f"Bearer {admin_key}"})
    await dead_mongo.close()
    for response in (anonymous, admin):
        body = response.json()
        assert response.status_code == 503
        assert body["status"] == "unavailable"
        assert body["components"]["mongodb"]["ok"] is False
        assert body["components"]["redis"]["ok"] is True
        assert body["components"]["worker"] == {"ok": False, "error": "no worker has reported recently"}
    # The internal address is shown to admin keys only.
    assert anonymous.json()["components"]["mongodb"]["error"] in ("unavailable", "failing")
    assert "127.0.0.1:9" not in anonymous.text
    assert "127.0.0.1:9" in admin.json()["components"]["mongodb"]["error"]


def test_the_readme_links_the_projects_own_docs() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\((docs/[^)]+)\)", readme))
    assert links >= {"docs/architecture.md", "docs/data-model.md", "docs/tradingview.md", "docs/operations.md"}
    for link in links:
        assert (ROOT / link).is_file(), link
    assert "../shared" not in readme  # a clone has no ../shared


def test_every_readme_example_is_valid_against_the_schema() -> None:
    """The README's GraphQL examples parse and validate (fields, arguments, types)."""
    import re
    from pathlib import Path

    from graphql import DocumentNode, OperationDefinitionNode, parse, validate

    from pocketquant.api.schema import build_schema

    schema = build_schema()._schema
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```graphql\n(.*?)```", readme, re.DOTALL)
    operations = [
        definition
        for block in blocks
        for definition in parse(block).definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    assert len(operations) >= 18
    for operation in operations:
        errors = validate(schema, DocumentNode(definitions=(operation,)))
        assert not errors, (operation.name, [e.message for e in errors])
