"""Helpers for waiting on the running service and subscribing the way a raw
graphql-transport-ws client does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.typing import Subprotocol

from pocketquant.domain import SymbolKey
from pocketquant.simulator import TradingViewSimulator
from tests.conftest import SIM_START
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient

AAPL = SymbolKey("NASDAQ", "AAPL")

T0 = int(SIM_START) + 30  # 14:38:00 UTC, a minute boundary: where the live tests trade

LIVE_BARS = """subscription($e: String!, $s: String!, $i: Interval!) {
  liveBars(exchange: $e, symbol: $s, interval: $i) { ticker interval timestamp open high low close volume ticks partial closed } }"""

LIVE_QUOTES = "subscription($t: [String!]!) { liveQuotes(tickers: $t) { ticker price time bid ask volume } }"


async def trade(
    simulator: TradingViewSimulator, clock: ManualClock, ticks: list[tuple[int, float, float]], key: SymbolKey = AAPL
) -> None:
    """Push trades (time, price, session volume), moving the stream's clock along."""
    for t, price, volume in ticks:
        clock.now = t
        await simulator.push_quote(key, lp=price, lp_time=t, volume=volume)


async def live_state(api_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        live: dict[str, Any] = (await http.get(api_url + "/health")).json()["live"]
        return live


async def idle(api_url: str) -> dict[str, Any] | None:
    live = await live_state(api_url)
    return live if live["subscribers"] == 0 and live["listeners"] == 0 else None


async def until(predicate: Any, within: float = 10.0) -> Any:
    """Poll the async ``predicate`` until it returns something truthy; return that."""
    async with asyncio.timeout(within):
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(0.05)


async def raw_subscriber(
    url: str, op_id: str, document: str, variables: dict[str, Any], key: str | None = None, **connect: Any
) -> Any:
    """A websocket to ``url`` that has been acknowledged (with API ``key`` in the
    connection_init payload, if given) and has subscribed ``document`` under ``op_id``
    (``connect`` goes to ``websockets.connect``)."""
    ws = await websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], **connect)
    init: dict[str, Any] = {"type": "connection_init"}
    if key is not None:
        init["payload"] = {"Authorization": f"Bearer {key}"}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(
        json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": document, "variables": variables}})
    )
    return ws


def small_buffer_socket(api_url: str) -> socket.socket:
    """A connected, non-blocking socket to the API with a small, fixed receive buffer
    (autotuning goes to 32 MB here): a client on it that stops reading really makes
    the server's writes wait."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.connect(("127.0.0.1", int(api_url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def session(api_url: str) -> AsyncIterator[Any]:
    transport = WebsocketsTransport(
        url=api_url.replace("http", "ws") + "/graphql", subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with Client(transport=transport, fetch_schema_from_transport=False) as s:
        yield s


class Collector:
    """Runs one subscription in the background and queues what it yields."""

    def __init__(self, s: Any, document: str, variables: dict[str, Any]) -> None:
        self.items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(s, GraphQLRequest(document, variable_values=variables)))

    async def _run(self, s: Any, request: GraphQLRequest) -> None:
        try:
            async for result in s.subscribe(request):
                await self.items.put(next(iter(result.values())))
        except Exception as exc:
            self.error = exc

    async def next(self, where: Any = lambda item: True, within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                item = await self.items.get()
                if where(item):
                    return item

    async def failure(self) -> BaseException:
        async with asyncio.timeout(10):
            await self.task
        assert self.error is not None
        return self.error


async def watch(gql: GraphQLClient, *keys: SymbolKey) -> None:
    result = (
        await gql.data(
            "mutation($t: [String!]!) { watchSymbols(tickers: $t) { __typename } }", {"t": [k.ticker for k in keys]}
        )
    )["watchSymbols"]
    assert result["__typename"] == "WatchlistChanged"


async def watching(gql: GraphQLClient, *keys: SymbolKey) -> None:
    """Watch ``keys`` and wait until the stream is connected and streams them."""
    await watch(gql, *keys)
    await until(lambda: receiving_all(gql, {k.ticker for k in keys}))


async def status(gql: GraphQLClient) -> dict[str, Any]:
    query = "{ streamStatus { running connected instance watchedSymbols receivingSymbols reconnects lateTicks barsPersisted ticksPerSecond lastTickAgeSeconds symbolErrors { ticker message } } }"
    result: dict[str, Any] = (await gql.data(query))["streamStatus"]
    return result


async def receiving_all(gql: GraphQLClient, tickers: set[str]) -> bool:
    s = await status(gql)
    return bool(s["connected"]) and set(s["receivingSymbols"]) >= tickers
