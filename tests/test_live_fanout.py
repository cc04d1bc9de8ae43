"""The fan-out: identical live subscriptions share one execution and one encoding, written
as prepared frames where the server offers them, else through ASGI."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import (
    AAPL,
    LIVE_BARS,
    LIVE_QUOTES,
    T0,
    idle,
    live_state,
    raw_subscriber,
    until,
    watching,
)


async def test_identical_subscriptions_share_one_group(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    await watching(gql, AAPL)
    url = api_url.replace("http", "ws") + "/graphql"
    variables = {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_1"}

    async def member(op_id: str) -> Any:
        return await raw_subscriber(url, op_id, LIVE_BARS, variables)

    async def next_bar(ws: Any, where: Any = lambda b: True) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                message = json.loads(await ws.recv())
                assert message["type"] == "next", message
                bar: dict[str, Any] = message["payload"]["data"]["liveBars"]
                if where(bar):
                    return bar

    stream_clock.now = T0 + 1
    await simulator.push_quote(AAPL, lp=50.0, lp_time=T0 + 1, volume=1.0)
    members = [await member(f"op-{i}") for i in range(3)]
    try:
        assert [(await next_bar(ws))["close"] for ws in members] == [50.0] * 3  # the snapshot, to each
        live = await live_state(api_url)
        assert (live["subscribers"], live["groups"], live["listeners"]) == (3, 1, 1)  # one execution path

        await members[0].send(json.dumps({"id": "op-0", "type": "complete"}))
        await simulator.push_quote(AAPL, lp=51.0, lp_time=T0 + 2, volume=2.0)
        assert [(await next_bar(ws, lambda b: b["close"] == 51.0))["high"] for ws in members[1:]] == [51.0, 51.0]
        assert (await live_state(api_url))["subscribers"] == 2

        late = await member("late")
        members.append(late)
        first = await next_bar(late)
        assert (first["close"], first["high"], first["ticks"]) == (51.0, 51.0, 2)  # current state, not history
    finally:
        for ws in members:
            ws.transport.abort()
    assert await until(lambda: idle(api_url)) is not None
    assert (await live_state(api_url))["groups"] == 0


async def _prices(ws: Any, op_id: str, count: int) -> list[float]:
    """The next ``count`` live quote prices this subscriber receives (checked messages)."""
    prices: list[float] = []
    async with asyncio.timeout(10):
        while len(prices) < count:
            message = json.loads(await ws.recv())
            assert (message["type"], message["id"]) == ("next", op_id), message
            prices.append(message["payload"]["data"]["liveQuotes"]["price"])
    return prices


async def _fan_out_and_count(
    api_url: str, gql: GraphQLClient, simulator: TradingViewSimulator, **connect: Any
) -> dict[str, int]:
    """Three subscribers of one group (two share an operation id) get 20 updates, in
    order; returns how the API wrote them (``updates_written`` from /health)."""
    await watching(gql, AAPL)
    await simulator.push_quote(AAPL, lp=1.0, lp_time=T0)
    url = api_url.replace("http", "ws") + "/graphql"
    variables = {"t": ["NASDAQ:AAPL"]}
    ids = ["1", "1", "a-much-longer-operation-id-é"]
    members = [await raw_subscriber(url, op_id, LIVE_QUOTES, variables, **connect) for op_id in ids]
    try:
        for ws, op_id in zip(members, ids, strict=True):
            assert await _prices(ws, op_id, 1) == [1.0]  # the snapshot
        before = (await live_state(api_url))["updates_written"]
        for i in range(2, 22):
            await simulator.push_quote(AAPL, lp=float(i), lp_time=T0)
        for ws, op_id in zip(members, ids, strict=True):
            assert await _prices(ws, op_id, 20) == [float(i) for i in range(2, 22)]
        after = (await live_state(api_url))["updates_written"]
        counts = {path: after[path] - before[path] for path in after}
        counts["deflate"] = sum(e.name == "permessage-deflate" for e in members[0].protocol.extensions)
        return counts
    finally:
        for ws in members:
            ws.transport.abort()


async def test_grouped_updates_are_written_as_prepared_frames(
    gql: GraphQLClient, api_url: str, stream: asyncio.Task[None], simulator: TradingViewSimulator
) -> None:
    # The API's own server offers the prepared-frame extension: every update to every
    # member is one frame written as is (the clients above parsed each one).
    assert await _fan_out_and_count(api_url, gql, simulator) == {"prepared_frame": 60, "asgi": 0, "deflate": 0}


@pytest.mark.parametrize(
    ("server", "connect", "deflate"),
    [
        pytest.param({"ws": "websockets-sansio"}, {}, 0, id="server-without-the-extension"),
        pytest.param({"ws_per_message_deflate": True}, {"compression": "deflate"}, 1, id="permessage-deflate"),
    ],
)
async def test_without_prepared_frames_updates_go_through_asgi(
    settings: Settings,
    resources: Resources,
    stream: asyncio.Task[None],
    simulator: TradingViewSimulator,
    server: dict[str, Any],
    connect: dict[str, Any],
    deflate: int,
    admin_key: str,
) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with (
        serve(create_app(settings, resources), **server) as url,
        httpx.AsyncClient(base_url=url, headers=headers) as http,
    ):
        counts = await _fan_out_and_count(url, GraphQLClient(http), simulator, **connect)
    assert counts == {"prepared_frame": 0, "asgi": 60, "deflate": deflate}
