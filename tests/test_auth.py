"""API keys as users meet them: created with `pocketquant keys`, sent over HTTP as a
Bearer token and over a real websocket in connection_init, checked by scope."""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.auth.keys import ApiKey, Scope
from pocketquant.domain import SymbolKey
from pocketquant.realtime import watchlist
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from tests.utils.graphql import GraphQLClient

CLI = Path(sys.executable).parent / "pocketquant"
QUERY = "{ watchedSymbols }"
WATCH = 'mutation { watchSymbols(tickers: ["NASDAQ:AAPL"]) { __typename } }'
UNWATCH = 'mutation { unwatchSymbols(tickers: ["NASDAQ:AAPL"]) { __typename } }'
LIVE = 'subscription { liveQuotes(tickers: ["NASDAQ:AAPL"]) { ticker } }'


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = os.environ | {"MONGODB_URL": settings.required_mongodb_url(), "MONGODB_DATABASE": settings.mongodb_database}
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "keys", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def locked_url(settings: Settings, resources: Resources) -> AsyncIterator[str]:
    """The API as docker-compose runs it: every read needs a key."""
    async with serve(create_app(settings.model_copy(update={"auth_required": True}), resources)) as url:
        yield url


async def post(url: str, query: str, key: str | None = None, header: str | None = None) -> httpx.Response:
    headers = {"Authorization": header or f"Bearer {key}"} if key or header else {}
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post("/graphql", json={"query": query}, headers=headers)


async def test_keys_command_creates_lists_and_revokes(settings: Settings, resources: Resources) -> None:
    code, key, err = await cli(settings, "create", "--name", "nightly script", "--scope", "write")
    assert code == 0, err
    key = key.strip()
    assert key.startswith("pq_")
    assert "shown only now" in err
    stored = await ApiKey.find_all().to_list()
    assert [(k.name, k.scope) for k in stored] == [("nightly script", Scope.WRITE)]
    assert key not in stored[0].model_dump_json()  # only its hash is kept
    assert (await resources.keys.authenticate(key)).scope is Scope.WRITE

    code, listing, err = await cli(settings, "list")
    assert code == 0, err
    assert "nightly script" in listing
    assert stored[0].key_id in listing
    assert key not in listing
    assert stored[0].secret_hash not in listing

    code, _, err = await cli(settings, "revoke", "nightly script")
    assert code == 0, err
    assert f"revoked {stored[0].key_id}" in err
    code, _, err = await cli(settings, "revoke", "nightly script")
    assert code == 1
    assert "no active key" in err
    code, _, err = await cli(settings, "create", "--name", "", "--scope", "write")
    assert code == 2
    code, _, err = await cli(settings, "create", "--name", "x", "--scope", "root")
    assert code == 2
    assert "root" in err


async def test_mutations_need_a_write_key_even_when_reads_are_open(
    api_url: str, resources: Resources, admin_key: str
) -> None:
    _, read_key = await resources.keys.create("reader", Scope.READ)
    _, write_key = await resources.keys.create("writer", Scope.WRITE)
    assert (await post(api_url, QUERY)).json() == {"data": {"watchedSymbols": []}}  # reads are open here

    anonymous = await post(api_url, WATCH)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    forbidden = await post(api_url, WATCH, read_key)
    assert forbidden.status_code == 403
    assert forbidden.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "`read` scope" in forbidden.json()["errors"][0]["message"]
    assert await watchlist.watched() == set()  # nothing changed

    done = await post(api_url, WATCH, write_key)
    assert done.json() == {"data": {"watchSymbols": {"__typename": "WatchlistChanged"}}}
    # An anonymous client cannot cut everyone's live feed.
    assert (await post(api_url, UNWATCH)).status_code == 401
    assert await watchlist.watched() == {SymbolKey("NASDAQ", "AAPL")}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer pq_000000000000_" + "A" * 43,  # well-formed, unknown
        "Bearer nonsense",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
async def test_a_bad_key_is_refused_not_ignored(api_url: str, header: str) -> None:
    response = await post(api_url, QUERY, header=header)  # even where reads need no key
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]
    assert header.split()[-1] not in response.text or header == "Bearer"


async def test_reads_need_a_read_key_when_auth_is_required(locked_url: str, resources: Resources) -> None:
    _, read_key = await resources.keys.create("reader", Scope.READ)
    refused = await post(locked_url, QUERY)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await post(locked_url, QUERY, read_key)).json() == {"data": {"watchedSymbols": []}}


async def test_a_revoked_key_stops_working(locked_url: str, resources: Resources) -> None:
    record, key = await resources.keys.create("leaving", Scope.READ)
    assert (await post(locked_url, QUERY, key)).status_code == 200
    assert [r.key_id for r in await resources.keys.revoke(record.key_id)] == [record.key_id]
    assert (await post(locked_url, QUERY, key)).status_code == 401


async def _connect(url: str, payload: dict[str, Any] | None = None, **connect: Any) -> Any:
    ws = await websockets.connect(
        url.replace("http", "ws") + "/graphql", subprotocols=[Subprotocol("graphql-transport-ws")], **connect
    )
    await ws.send(json.dumps({"type": "connection_init", **({"payload": payload} if payload is not None else {})}))
    return ws


async def _closed_with(ws: Any) -> int:
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    code: int = ws.close_code
    return code


async def _subscribe(ws: Any, document: str, op_id: str = "1") -> dict[str, Any]:
    """Acknowledge, run a query or mutation over the socket; its first message (the
    ``complete`` after it is read too)."""
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
    return await _operation(ws, document, op_id)


async def _operation(ws: Any, document: str, op_id: str) -> dict[str, Any]:
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": document}}))
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    if message["type"] == "next":
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"id": op_id, "type": "complete"}
    return message


async def test_websocket_keys_in_connection_init(locked_url: str, resources: Resources, gql: GraphQLClient) -> None:
    await watchlist.watch([SymbolKey("NASDAQ", "AAPL")], 10)
    _, read_key = await resources.keys.create("front end", Scope.READ)
    # No key, or a bad one: refused at connection_init with 4403.
    assert await _closed_with(await _connect(locked_url)) == 4403
    assert await _closed_with(await _connect(locked_url, {"Authorization": "Bearer pq_bad"})) == 4403
    assert await _closed_with(await _connect(locked_url, {"Authorization": 5})) == 4403
    # A read key: queries and subscriptions run; a mutation is refused for its scope.
    ws = await _connect(locked_url, {"Authorization": f"Bearer {read_key}"})
    assert await _subscribe(ws, QUERY) == {
        "id": "1",
        "type": "next",
        "payload": {"data": {"watchedSymbols": ["NASDAQ:AAPL"]}},
    }
    refused = await _operation(ws, UNWATCH, "2")
    assert refused["type"] == "error", refused
    assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN", refused
    await ws.send(json.dumps({"id": "3", "type": "subscribe", "payload": {"query": LIVE}}))
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as http:
        live = (await http.get(locked_url + "/health")).json()["live"]
    assert live["subscribers"] == 1  # admitted
    await ws.close()
    # The bare key in the payload, or the Authorization header of the upgrade request.
    ws = await _connect(locked_url, {"Authorization": read_key})
    assert (await _subscribe(ws, QUERY))["type"] == "next"
    await ws.close()
    ws = await _connect(locked_url, additional_headers={"Authorization": f"Bearer {read_key}"})
    assert (await _subscribe(ws, QUERY))["type"] == "next"
    await ws.close()
    assert await watchlist.watched() == {SymbolKey("NASDAQ", "AAPL")}


async def test_websocket_reads_are_open_unless_auth_is_required(api_url: str) -> None:
    ws = await _connect(api_url)
    assert (await _subscribe(ws, QUERY))["type"] == "next"
    message = await _operation(ws, UNWATCH, "2")
    assert message["type"] == "error", message
    assert message["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await ws.close()
    # A bad key is refused even here.
    assert await _closed_with(await _connect(api_url, {"Authorization": "Bearer pq_bad"})) == 4403


async def test_open_mode_lets_mutations_through_without_a_key(settings: Settings, resources: Resources) -> None:
    async with serve(create_app(settings, resources, open_access=True)) as url:
        assert (await post(url, WATCH)).json() == {"data": {"watchSymbols": {"__typename": "WatchlistChanged"}}}


@pytest.mark.parametrize(("origin", "allowed"), [("https://charts.example", True), ("https://evil.example", False)])
async def test_cors_and_the_websocket_origin_check_follow_the_setting(
    settings: Settings, resources: Resources, origin: str, allowed: bool
) -> None:
    configured = settings.model_copy(update={"cors_allowed_origins": ["https://charts.example"]})
    async with serve(create_app(configured, resources)) as url, httpx.AsyncClient(base_url=url) as http:
        preflight = await http.options(
            "/graphql",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )  # fmt: skip
        assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
        response = await http.post("/graphql", json={"query": QUERY}, headers={"Origin": origin})
        assert (response.headers.get("access-control-allow-origin") == origin) is allowed
        if allowed:
            ws = await _connect(url, origin=origin)
            assert (await _subscribe(ws, QUERY))["type"] == "next"
            await ws.close()
        else:
            with pytest.raises(websockets.InvalidStatus) as refused:
                await _connect(url, origin=origin)
            assert refused.value.response.status_code == 403
        # Same-origin pages (the API's own) always connect.
        ws = await _connect(url, origin=url)
        assert (await _subscribe(ws, QUERY))["type"] == "next"
        await ws.close()


async def test_graphiql_introspection_and_suggestions_are_off_unless_enabled(
    settings: Settings, resources: Resources
) -> None:
    production = settings.model_copy(update={"graphiql": False, "introspection": False, "field_suggestions": False})
    explore = settings.model_copy(update={"graphiql": True, "introspection": True, "field_suggestions": True})
    typo = "{ watchedSymbol }"
    for configured, on in ((production, False), (explore, True)):
        async with serve(create_app(configured, resources)) as url, httpx.AsyncClient(base_url=url) as http:
            page = await http.get("/graphql", headers={"Accept": "text/html"})
            assert (page.status_code == 200 and "graphiql" in page.text.lower()) is on
            introspection = (await http.post("/graphql", json={"query": "{ __schema { types { name } } }"})).json()
            assert ("errors" not in introspection) is on
            suggestion = (await http.post("/graphql", json={"query": typo})).json()["errors"][0]["message"]
            assert ("Did you mean 'watchedSymbols'" in suggestion) is on
