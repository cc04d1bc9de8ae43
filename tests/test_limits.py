"""Abuse limits as clients run into them: the cost limit, per-key rate limits in Redis,
the batch size of syncs, the watch list's cap under concurrent writers, and symbols
checked against TradingView before they are tracked or watched."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.auth.keys import Scope
from pocketquant.domain import SymbolKey
from pocketquant.history.documents import SymbolRecord, SyncStatus
from pocketquant.realtime import watchlist
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from tests.utils.graphql import GraphQLClient
from tests.utils.live import raw_subscriber

BARS_OBJECTS = 'bars(exchange: "NASDAQ", symbol: "AAPL", interval: MINUTE_1, first: 5000) { bars { time open high low close volume } }'


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_queries_per_second": 2.0,
            "rate_limit_queries_burst": 3,
            "rate_limit_mutations_per_second": 1.0,
            "rate_limit_mutations_burst": 10,
            "rate_limit_sync_jobs_per_minute": 1.0,
            "rate_limit_sync_jobs_burst": 5,
        }
    )


@pytest.fixture
async def limited_url(limited: Settings, resources: Resources) -> AsyncIterator[str]:
    async with serve(create_app(limited, resources)) as url:
        yield url


async def test_aliases_of_big_pages_are_refused_before_they_run(gql: GraphQLClient) -> None:
    one = await gql.raw(f"{{ {BARS_OBJECTS} }}")
    assert "errors" not in one  # one full page is within the limit
    aliases = " ".join(f"a{i}: {BARS_OBJECTS}" for i in range(15))
    started = time.perf_counter()
    errors = await gql.errors(f"{{ {aliases} }}")
    assert time.perf_counter() - started < 1.0  # refused before execution
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert errors[0]["extensions"]["cost"] > errors[0]["extensions"]["maxCost"] == 50_000
    assert "page with `after`" in errors[0]["message"]


async def test_the_cost_counts_variables_fragments_and_columns(gql: GraphQLClient) -> None:
    columns = """query($n: Int) { a: bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: $n) { ...Cols }
                                  b: bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: $n) { ...Cols } }
                 fragment Cols on BarPage { columns { t o h l c v } }"""
    assert "errors" not in await gql.raw(columns, {"n": 4000})  # 2 x 24,000 values
    errors = await gql.errors(columns, {"n": 5000})  # 2 x 30,000
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert errors[0]["extensions"]["cost"] > 60_000


async def _post(url: str, query: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=url) as http:
        return await http.post("/graphql", json={"query": query}, headers=headers)


async def test_queries_are_rate_limited_per_key(limited_url: str, resources: Resources) -> None:
    _, first = await resources.keys.create("first", Scope.READ)
    _, second = await resources.keys.create("second", Scope.READ)
    statuses = [(await _post(limited_url, "{ watchedSymbols }", first)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = await _post(limited_url, "{ watchedSymbols }", first)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfterSeconds"] <= 1.0
    # Another key has its own bucket; anonymous clients share one per address.
    assert (await _post(limited_url, "{ watchedSymbols }", second)).status_code == 200
    await asyncio.sleep(0.6)  # 2 tokens a second come back
    assert (await _post(limited_url, "{ watchedSymbols }", first)).status_code == 200


async def test_subscriptions_count_against_the_query_limit(limited_url: str, resources: Resources) -> None:
    await watchlist.watch([SymbolKey("NASDAQ", "AAPL")], 10)
    url = limited_url.replace("http", "ws") + "/graphql"
    document = 'subscription { liveQuotes(tickers: ["NASDAQ:AAPL"]) { ticker } }'
    sockets = [await raw_subscriber(url, f"s{i}", document, {}) for i in range(5)]
    try:
        refusals = []
        for ws in sockets[3:]:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            refusals.append((message["type"], message["payload"][0]["extensions"]["code"]))
        assert refusals == [("error", "RATE_LIMITED")] * 2
    finally:
        for ws in sockets:
            await ws.close()


async def test_sync_jobs_are_rate_limited_and_batches_bounded(
    limited_url: str, resources: Resources, admin_key: str
) -> None:
    mutation = """mutation($input: SyncSymbolsInput!) { syncSymbols(input: $input) {
        __typename ... on SyncBatchEnqueued { jobs { jobId } } ... on InvalidInput { message field } } }"""

    async def sync_symbols(symbols: list[str], intervals: list[str]) -> dict[str, Any]:
        variables = {
            "input": {"symbols": [{"exchange": "NASDAQ", "symbol": s} for s in symbols], "intervals": intervals}
        }
        async with httpx.AsyncClient(base_url=limited_url, headers={"Authorization": f"Bearer {admin_key}"}) as http:
            response = await http.post("/graphql", json={"query": mutation, "variables": variables})
        body: dict[str, Any] = response.json() | {"status": response.status_code}
        return body

    # The 1,300 fetches of one small request seen before: refused whole, nothing queued.
    intervals = ["MINUTE_1", "MINUTE_3", "MINUTE_5", "MINUTE_15", "MINUTE_30", "MINUTE_45", "HOUR_1", "HOUR_2",
                 "HOUR_3", "HOUR_4", "DAY_1", "WEEK_1", "MONTH_1"]  # fmt: skip
    huge = await sync_symbols([f"S{i}" for i in range(100)], intervals)
    assert huge["data"]["syncSymbols"]["__typename"] == "InvalidInput"
    assert "at most 100 series" in huge["data"]["syncSymbols"]["message"]
    # More jobs at once than the bucket holds: refused, with why.
    six = await sync_symbols(["AAPL", "MSFT", "NVDA"], ["DAY_1", "HOUR_1"])
    assert six["status"] == 429
    assert six["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert "needs 6 sync jobs" in six["errors"][0]["message"]
    assert await resources.redis.zcard(resources.settings.queue_name) == 0
    five = await sync_symbols(["AAPL", "MSFT", "NVDA", "AMD", "INTC"], ["DAY_1"])
    assert len(five["data"]["syncSymbols"]["jobs"]) == 5
    again = await sync_symbols(["AAPL"], ["HOUR_1"])  # the bucket is empty for a minute
    assert again["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await resources.redis.zcard(resources.settings.queue_name) == 5


async def test_the_watch_list_cap_holds_under_concurrent_watchers(
    settings: Settings, resources: Resources, admin_key: str
) -> None:
    capped = settings.model_copy(update={"max_watched_symbols": 4})
    tickers = [i.key.ticker for i in TradingViewSimulator().market.instruments]  # 10 real symbols
    mutation = "mutation($t: [String!]!) { watchSymbols(tickers: $t) { __typename ... on InvalidInput { message } } }"
    async with (
        serve(create_app(capped, resources)) as first,
        serve(create_app(capped, resources)) as second,  # two API processes share the database
        httpx.AsyncClient(headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as http,
    ):
        results = await asyncio.gather(
            *(
                http.post((first, second)[i % 2] + "/graphql", json={"query": mutation, "variables": {"t": [t]}})
                for i, t in enumerate(tickers)
            )
        )
    kinds = [r.json()["data"]["watchSymbols"]["__typename"] for r in results]
    assert kinds.count("WatchlistChanged") == 4, kinds
    assert all(
        "at most 4 symbols" in r.json()["data"]["watchSymbols"]["message"] for r in results if "InvalidInput" in r.text
    )
    assert len(await watchlist.watched()) == 4


async def test_unknown_symbols_are_not_tracked_or_watched(
    gql: GraphQLClient, simulator: TradingViewSimulator, resources: Resources
) -> None:
    watch = (
        "mutation($t: [String!]!) { watchSymbols(tickers: $t) { __typename ... on InvalidInput { message field } } }"
    )
    result = (await gql.data(watch, {"t": ["NASDAQ:AAPL", "NASDAQ:NOPE"]}))["watchSymbols"]
    assert result == {
        "__typename": "InvalidInput",
        "message": "TradingView does not know NASDAQ:NOPE",
        "field": "tickers",
    }
    assert await watchlist.watched() == set()  # all or nothing
    track = 'mutation { trackSymbol(input: {exchange: "NASDAQ", symbol: "NOPE"}) { __typename ... on InvalidInput { message } } }'
    assert (await gql.data(track))["trackSymbol"] == {
        "__typename": "InvalidInput",
        "message": "TradingView does not know NASDAQ:NOPE",
    }
    assert await SymbolRecord.find_all().count() == 0
    # The answers are cached: asking again does not go to TradingView.
    resolves = simulator.stats.commands.count("resolve_symbol")
    await gql.data(watch, {"t": ["NASDAQ:NOPE"]})
    assert (await gql.data(watch, {"t": ["NASDAQ:AAPL"]}))["watchSymbols"]["__typename"] == "WatchlistChanged"
    assert simulator.stats.commands.count("resolve_symbol") == resolves


async def test_symbols_are_not_watched_unchecked_when_tradingview_is_unreachable(
    settings: Settings, admin_key: str
) -> None:
    from pocketquant.infra.embedded import free_port
    from pocketquant.resources import open_resources

    offline = settings.model_copy(
        update={"tradingview_websocket_url": f"ws://127.0.0.1:{free_port()}/socket.io/websocket"}
    )
    async with open_resources(offline) as resources:
        await resources.keys.create("x", Scope.ADMIN)
        _, key = await resources.keys.create("writer", Scope.WRITE)
        async with serve(create_app(offline, resources)) as url:
            response = await _post(url, 'mutation { watchSymbols(tickers: ["NASDAQ:MSFT"]) { __typename } }', key)
        assert response.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert "cannot check the symbols with TradingView" in response.json()["errors"][0]["message"]
        assert await watchlist.watched() == set()
        await resources.mongo.drop_database(offline.mongodb_database)


async def test_scheduled_resyncs_skip_symbols_found_unknown(gql: GraphQLClient, resources: Resources) -> None:
    from pocketquant.history.jobs import resync_daily

    track = 'mutation { trackSymbol(input: {exchange: "NASDAQ", symbol: "MSFT", intervals: [DAY_1]}) { __typename } }'
    assert (await gql.data(track))["trackSymbol"]["__typename"] == "SymbolTracked"
    assert await resync_daily({"resources": resources}) == 1
    # Later TradingView stops knowing it (a delisting): the next scheduled run skips it.
    await SyncStatus.get_pymongo_collection().update_one(
        {"exchange": "NASDAQ", "symbol": "MSFT", "interval": "1d"},
        {"$set": {"state": "failed", "last_error_kind": "symbol_not_found"}},
        upsert=True,
    )
    assert await resync_daily({"resources": resources}) == 0


async def test_a_large_object_page_lets_other_requests_through(
    gql: GraphQLClient, resources: Resources, api_url: str
) -> None:
    from pocketquant.domain import BarColumns, Interval, SeriesKey
    from pocketquant.simulator.market import SimulatedMarket

    market = SimulatedMarket()
    instrument = market.get(SymbolKey("NASDAQ", "AAPL"))
    assert instrument is not None
    history = market.history(instrument, Interval.MINUTE_1, 5_000, int(time.time()))
    await resources.store.write(SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1), BarColumns.from_bars(history))
    finished: list[str] = []

    async def big() -> None:
        body = await gql.raw(f"{{ {BARS_OBJECTS} }}")
        assert len(body["data"]["bars"]["bars"]) == 5_000
        finished.append("page")

    async def small() -> None:
        await asyncio.sleep(0.02)  # once the page is being built
        async with httpx.AsyncClient(base_url=api_url) as http:
            assert (await http.post("/graphql", json={"query": "{ watchedSymbols }"})).status_code == 200
        finished.append("small")

    await asyncio.gather(big(), small())
    # The 5,000 bars are completed a hundred at a time, with the loop free in between:
    # the small request, sent after the page started, is answered before it.
    assert finished == ["small", "page"]


async def test_large_reads_wait_for_a_turn_instead_of_failing(
    settings: Settings, resources: Resources, admin_key: str
) -> None:
    one_at_a_time = settings.model_copy(update={"max_concurrent_large_reads": 1})
    query = '{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: 1000) { count columns { t c } } }'
    async with serve(create_app(one_at_a_time, resources)) as url, httpx.AsyncClient(base_url=url) as http:
        responses = await asyncio.gather(*(http.post("/graphql", json={"query": query}) for _ in range(20)))
    assert [r.json() for r in responses] == [{"data": {"bars": {"count": 0, "columns": {"t": [], "c": []}}}}] * 20


async def test_documents_over_the_token_and_depth_limits_are_refused_every_time(
    settings: Settings, resources: Resources, admin_key: str
) -> None:
    """The limits hold for a document the server has seen before (cached parses and
    validations must not let a refused document through the second time)."""
    shallow = settings.model_copy(update={"max_query_depth": 2, "max_query_tokens": 50})
    deep = "{ trackedSymbols { items { syncStatus { symbol } } } }"
    long = "{ " + " ".join("__typename" for _ in range(60)) + " }"
    async with (
        serve(create_app(shallow, resources)) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}) as http,
    ):
        gql = GraphQLClient(http)
        for _ in range(2):
            errors = await gql.errors(deep)
            assert "exceeds maximum operation depth of 2" in errors[0]["message"]
            errors = await gql.errors(long)
            assert "more than 50 tokens" in errors[0]["message"]
            assert (await gql.data("{ trackedSymbols { items { ticker } } }"))["trackedSymbols"]["items"] == []
