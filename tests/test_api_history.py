"""The history slice as users meet it: GraphQL over HTTP to the running app, syncs
executed by a real arq worker consuming the queue, bars served by the simulator."""

from datetime import UTC, datetime
from typing import Any

import pytest
from arq.worker import Worker

from pocketquant.domain import Interval, SymbolKey
from pocketquant.history.codec import pack_values, unpack_values
from pocketquant.history.documents import BarChunk, SyncStatus
from pocketquant.resources import Resources
from pocketquant.simulator import Fault, TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import BARS_COLUMNS, BARS_OBJECTS, SYNC_SYMBOL, GraphQLClient

AAPL = {"exchange": "NASDAQ", "symbol": "AAPL"}
AAPL_KEY = SymbolKey("NASDAQ", "AAPL")


async def sync(
    gql: GraphQLClient, interval: str = "MINUTE_1", bars: int | None = 2_500, **symbol: str
) -> dict[str, Any]:
    variables = {"input": {**(symbol or AAPL), "interval": interval, "bars": bars}}
    enqueued = (await gql.data(SYNC_SYMBOL, variables))["syncSymbol"]
    assert enqueued["__typename"] == "SyncEnqueued", enqueued
    return await gql.wait_for_job(enqueued["jobId"])


def served(simulator: TradingViewSimulator, interval: Interval, n: int, key: SymbolKey = AAPL_KEY) -> list[Any]:
    instrument = simulator.market.get(key)
    assert instrument is not None
    return simulator.market.history(instrument, interval, n, int(simulator.clock()))


async def all_pages(gql: GraphQLClient, query: str, first: int, **extra: Any) -> list[dict[str, Any]]:
    pages, after = [], None
    while True:
        page = (await gql.data(query, {**AAPL, "interval": "MINUTE_1", "first": first, "after": after, **extra}))[
            "bars"
        ]
        pages.append(page)
        if not page["hasNextPage"]:
            return pages
        after = page["endCursor"]


async def test_sync_mutation_to_paged_query_end_to_end(
    gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator, non_utc_timezone: str
) -> None:
    job = await sync(gql)
    assert job["result"]["ok"] is True
    assert (job["result"]["barsFetched"], job["result"]["barsInserted"], job["result"]["barCount"]) == (
        2_500,
        2_500,
        2_500,
    )
    expected = served(simulator, Interval.MINUTE_1, 2_500)

    pages = await all_pages(gql, BARS_COLUMNS, 1_000)
    assert [p["count"] for p in pages] == [1_000, 1_000, 500]
    cols = {k: [x for p in pages for x in p["columns"][k]] for k in "tohlcv"}
    assert cols["t"] == [b.time for b in expected]
    assert (cols["o"], cols["h"], cols["l"], cols["c"], cols["v"]) == (
        [b.open for b in expected],
        [b.high for b in expected],
        [b.low for b in expected],
        [b.close for b in expected],
        [b.volume for b in expected],
    )

    objects = [b for p in await all_pages(gql, BARS_OBJECTS, 700) for b in p["bars"]]
    assert len(objects) == 2_500
    for bar, want in zip(objects, expected, strict=True):
        assert bar["timestamp"] == want.time
        assert bar["time"] == datetime.fromtimestamp(want.time, UTC).isoformat()  # UTC, whatever TZ says
        assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (
            want.open,
            want.high,
            want.low,
            want.close,
            want.volume,
        )
    assert objects[-1]["time"] == "2026-11-20T14:37:00+00:00"


async def test_newest_first_and_time_range(gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator) -> None:
    await sync(gql, bars=600)
    times = [b.time for b in served(simulator, Interval.MINUTE_1, 600)]
    newest = await all_pages(gql, BARS_COLUMNS, 250, order="NEWEST_FIRST")
    assert [t for p in newest for t in p["columns"]["t"]] == times[::-1]
    window = await gql.data(
        BARS_COLUMNS,
        {
            **AAPL,
            "interval": "MINUTE_1",
            "from": datetime.fromtimestamp(times[10], UTC).isoformat(),
            "to": datetime.fromtimestamp(times[19], UTC).replace(tzinfo=None).isoformat(),
        },
    )
    assert window["bars"]["columns"]["t"] == times[10:20]
    assert window["bars"]["hasNextPage"] is False


async def test_resync_of_unchanged_bars_writes_nothing(
    gql: GraphQLClient, worker: Worker, resources: Resources
) -> None:
    await sync(gql)
    versions = sorted((c.start, c.version) for c in await BarChunk.find_all().to_list())
    again = (await sync(gql))["result"]
    assert (again["barsInserted"], again["barsUpdated"], again["chunksWritten"], again["barsUnchanged"]) == (
        0,
        0,
        0,
        2_500,
    )
    assert sorted((c.start, c.version) for c in await BarChunk.find_all().to_list()) == versions
    assert again["barCount"] == 2_500


async def test_corrected_last_bar_is_updated_and_cache_invalidated(
    gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator, sim_clock: ManualClock
) -> None:
    await sync(gql)
    newest = {**AAPL, "interval": "MINUTE_1", "first": 3, "order": "NEWEST_FIRST"}
    before = (await gql.data(BARS_COLUMNS, newest))["bars"]["columns"]

    # Prove the page comes from the cache: change MongoDB behind its back.
    chunk = await BarChunk.find(BarChunk.symbol == "AAPL").sort("-start").first_or_none()
    assert chunk is not None
    closes = unpack_values(chunk.c)
    closes[-1] = 1.0
    await BarChunk.get_pymongo_collection().update_one({"_id": chunk.id}, {"$set": {"c": pack_values(closes)}})
    assert (await gql.data(BARS_COLUMNS, newest))["bars"]["columns"] == before

    # 20 s later the newest (in-progress) bar has moved: a re-sync corrects it.
    sim_clock.advance(20)
    result = (await sync(gql))["result"]
    assert (result["barsUpdated"], result["barsInserted"], result["chunksWritten"]) == (1, 0, 1)
    after = (await gql.data(BARS_COLUMNS, newest))["bars"]["columns"]
    want = served(simulator, Interval.MINUTE_1, 3)[::-1]
    assert after["t"] == before["t"]
    assert after["c"] == [b.close for b in want]
    assert after["v"] == [b.volume for b in want]
    assert after["c"][0] != before["c"][0] or after["v"][0] != before["v"][0]

    # A minute later a new bar exists: inserted, and the count grows by one.
    sim_clock.advance(60)
    result = (await sync(gql))["result"]
    assert result["barsInserted"] == 1
    assert result["barCount"] == 2_501
    assert (await gql.data(BARS_COLUMNS, newest))["bars"]["columns"]["t"][0] == before["t"][0] + 60


async def test_unknown_symbol_is_recorded_in_sync_status(gql: GraphQLClient, worker: Worker) -> None:
    job = await sync(gql, interval="DAY_1", exchange="NASDAQ", symbol="NOPE")
    assert job["result"]["ok"] is False
    assert job["result"]["errorKind"] == "symbol_not_found"
    assert "does not know NASDAQ:NOPE" in job["result"]["error"]
    status = (
        await gql.data(
            '{ syncStatus(exchange: "NASDAQ", symbol: "NOPE") { interval state lastError lastErrorKind lastErrorAt barCount lastSuccessAt } }'
        )
    )["syncStatus"]
    assert len(status) == 1
    assert status[0]["state"] == "FAILED"
    assert status[0]["lastErrorKind"] == "symbol_not_found"
    assert status[0]["lastErrorAt"] is not None
    assert status[0]["lastSuccessAt"] is None
    assert status[0]["barCount"] == 0
    assert await BarChunk.find_all().count() == 0


async def test_transient_failures_are_retried_then_succeed(
    gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator
) -> None:
    simulator.fail_next(SymbolKey("NASDAQ", "AAPL"), Fault.DROP, times=2)
    job = await sync(gql, interval="HOUR_1", bars=100)
    assert job["result"]["ok"] is True
    assert job["result"]["attempts"] == 3
    status = (await gql.data('{ syncStatus(exchange: "NASDAQ", symbol: "AAPL") { state barCount lastError } }'))[
        "syncStatus"
    ][0]
    assert status["state"] == "SUCCEEDED"
    assert status["barCount"] == 100
    assert "connection" in status["lastError"]  # the earlier failure stays visible


async def test_persistent_transient_failure_gives_up_after_max_tries(
    gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator
) -> None:
    simulator.faults[SymbolKey("NASDAQ", "AAPL")] = Fault.CRITICAL
    job = await sync(gql, interval="HOUR_1", bars=100)
    assert job["result"]["ok"] is False
    assert job["result"]["attempts"] == 3
    assert job["result"]["errorKind"] == "provider_unavailable"
    assert await BarChunk.find_all().count() == 0


async def test_corrupt_history_is_rejected_whole(
    gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator
) -> None:
    simulator.faults[SymbolKey("NASDAQ", "AAPL")] = Fault.CORRUPT
    job = await sync(gql, interval="HOUR_1", bars=100)
    assert job["result"]["errorKind"] == "invalid_history"
    assert await BarChunk.find_all().count() == 0


async def test_a_queued_sync_absorbs_duplicates(gql: GraphQLClient, resources: Resources) -> None:
    # No worker runs here: the first job stays queued.
    variables = {"input": {**AAPL, "interval": "DAY_1", "bars": 10}}
    first = (await gql.data(SYNC_SYMBOL, variables))["syncSymbol"]
    second = (await gql.data(SYNC_SYMBOL, variables))["syncSymbol"]
    assert first["jobId"] == second["jobId"] == "sync:NASDAQ:AAPL:1d"
    assert (first["deduplicated"], second["deduplicated"]) == (False, True)
    assert await resources.redis.zcard(resources.settings.queue_name) == 1
    job = (
        await gql.data(
            "query($id: ID!) { syncJob(id: $id) { state exchange symbol interval result { ok } } }",
            {"id": first["jobId"]},
        )
    )["syncJob"]
    assert job == {"state": "QUEUED", "exchange": "NASDAQ", "symbol": "AAPL", "interval": "DAY_1", "result": None}


async def test_a_finished_sync_does_not_block_the_next(gql: GraphQLClient, worker: Worker) -> None:
    await sync(gql, interval="DAY_1", bars=10)
    variables = {"input": {**AAPL, "interval": "DAY_1", "bars": 20}}
    again = (await gql.data(SYNC_SYMBOL, variables))["syncSymbol"]
    assert again["deduplicated"] is False
    assert (await gql.wait_for_job(again["jobId"]))["result"]["barsFetched"] == 20


async def test_sync_symbols_enqueues_every_series(gql: GraphQLClient, worker: Worker) -> None:
    mutation = """mutation($input: SyncSymbolsInput!) { syncSymbols(input: $input) {
        __typename ... on SyncBatchEnqueued { jobs { jobId deduplicated } } ... on InvalidInput { message field } } }"""
    symbols = [
        {"exchange": "nasdaq", "symbol": "aapl"},
        {"exchange": "BINANCE", "symbol": "BTCUSDT"},
        {"exchange": "NASDAQ", "symbol": "AAPL"},
    ]
    result = (
        await gql.data(mutation, {"input": {"symbols": symbols, "intervals": ["DAY_1", "HOUR_1", "DAY_1"], "bars": 50}})
    )["syncSymbols"]
    ids = sorted(j["jobId"] for j in result["jobs"])
    assert ids == ["sync:BINANCE:BTCUSDT:1d", "sync:BINANCE:BTCUSDT:1h", "sync:NASDAQ:AAPL:1d", "sync:NASDAQ:AAPL:1h"]
    for job_id in ids:
        assert (await gql.wait_for_job(job_id))["result"]["barCount"] == 50


async def test_track_untrack_and_scheduled_resync(gql: GraphQLClient, worker: Worker, resources: Resources) -> None:
    from pocketquant.history.jobs import cron_jobs, resync_daily, resync_intraday

    mutation = """mutation($input: TrackSymbolInput!) { trackSymbol(input: $input) { __typename
        ... on SymbolTracked { symbol { ticker tracked trackedIntervals } jobs { jobId } } } }"""
    tracked = (
        await gql.data(mutation, {"input": {"exchange": "KRX", "symbol": "005930", "intervals": ["DAY_1", "MINUTE_5"]}})
    )["trackSymbol"]
    assert tracked["symbol"] == {"ticker": "KRX:005930", "tracked": True, "trackedIntervals": ["DAY_1", "MINUTE_5"]}
    for job in tracked["jobs"]:
        assert (await gql.wait_for_job(job["jobId"]))["result"]["ok"] is True

    symbol = (
        await gql.data(
            '{ symbol(exchange: "KRX", symbol: "005930") { description currency timezone session type trackedAt syncStatus { interval state barCount } } }'
        )
    )["symbol"]
    assert (symbol["description"], symbol["currency"], symbol["timezone"], symbol["session"], symbol["type"]) == (
        "삼성전자",
        "KRW",
        "Asia/Seoul",
        "0900-1530",
        "stock",
    )
    assert [(s["interval"], s["state"]) for s in symbol["syncStatus"]] == [
        ("MINUTE_5", "SUCCEEDED"),
        ("DAY_1", "SUCCEEDED"),
    ]
    listed = (await gql.data("{ trackedSymbols { items { ticker } hasNextPage } }"))["trackedSymbols"]
    assert listed == {"items": [{"ticker": "KRX:005930"}], "hasNextPage": False}

    ctx = {"resources": resources}
    assert await resync_intraday(ctx) == 1  # MINUTE_5
    assert await resync_daily(ctx) == 1  # DAY_1
    await gql.wait_for_job("sync:KRX:005930:5m")
    await gql.wait_for_job("sync:KRX:005930:1d")

    untracked = (
        await gql.data(
            'mutation { untrackSymbol(exchange: "KRX", symbol: "005930") { ... on SymbolUntracked { wasTracked symbol { tracked } } } }'
        )
    )["untrackSymbol"]
    assert untracked == {"wasTracked": True, "symbol": {"tracked": False}}
    assert await resync_intraday(ctx) == 0
    assert (await gql.data("{ trackedSymbols { items { ticker } } }"))["trackedSymbols"]["items"] == []

    schedules = {c.name: c for c in cron_jobs(resources.settings)}
    assert schedules["resync-intraday"].hour == {0, 6, 12, 18}
    assert schedules["resync-daily"].weekday == {0, 1, 2, 3, 4}


async def test_tracked_symbols_page_by_cursor(gql: GraphQLClient, worker: Worker) -> None:
    mutation = "mutation($e: String!, $s: String!) { trackSymbol(input: {exchange: $e, symbol: $s, intervals: [DAY_1]}) { __typename } }"
    for ex, sym in [
        ("NASDAQ", "MSFT"),
        ("BINANCE", "ETHUSDT"),
        ("NASDAQ", "AAPL"),
        ("BINANCE", "BTCUSDT"),
        ("FX", "EURUSD"),
    ]:
        assert (await gql.data(mutation, {"e": ex, "s": sym}))["trackSymbol"]["__typename"] == "SymbolTracked"
    seen, after = [], None
    while True:
        page = (
            await gql.data(
                "query($a: String) { trackedSymbols(first: 2, after: $a) { items { ticker } hasNextPage endCursor } }",
                {"a": after},
            )
        )["trackedSymbols"]
        seen += [i["ticker"] for i in page["items"]]
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    assert seen == ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "FX:EURUSD", "NASDAQ:AAPL", "NASDAQ:MSFT"]


async def test_search_symbols_through_the_provider(gql: GraphQLClient) -> None:
    found = (await gql.data('{ searchSymbols(text: "tether", limit: 2) { ticker description type currency } }'))[
        "searchSymbols"
    ]
    assert found == [
        {"ticker": "BINANCE:BTCUSDT", "description": "Bitcoin / TetherUS", "type": "spot", "currency": "USDT"},
        {"ticker": "BINANCE:ETHUSDT", "description": "Ethereum / TetherUS", "type": "spot", "currency": "USDT"},
    ]
    errors = await gql.errors('{ searchSymbols(text: "", limit: 2) { ticker } }')
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "text"}


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        ('exchange: "NASDAQ", symbol: "AA PL", interval: DAY_1', "symbol", "malformed symbol 'AA PL'"),
        ('exchange: "NAS;DAQ", symbol: "AAPL", interval: DAY_1', "exchange", "malformed exchange 'NAS;DAQ'"),
        (
            'exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: 0',
            "first",
            "first must be between 1 and 5000, got 0",
        ),
        (
            'exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: 5001',
            "first",
            "first must be between 1 and 5000, got 5001",
        ),
        (
            'exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, from: "2026-02-01T00:00:00Z", to: "2026-01-01T00:00:00Z"',
            "to",
            "is before `from`",
        ),
        ('exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, after: "bm90IGEgY3Vyc29y"', "after", "malformed cursor"),
        ('exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, after: "%%%"', "after", "malformed cursor"),
    ],
)
async def test_bad_bars_arguments_get_specific_errors(
    gql: GraphQLClient, arguments: str, field: str, message: str
) -> None:
    errors = await gql.errors(f"{{ bars({arguments}) {{ count }} }}")
    assert message in errors[0]["message"]
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


async def test_unknown_interval_is_a_validation_error(gql: GraphQLClient) -> None:
    errors = await gql.errors('{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: MINUTE_2) { count } }')
    assert "MINUTE_2" in errors[0]["message"]
    assert "Interval" in errors[0]["message"]
    errors = await gql.errors(SYNC_SYMBOL, {"input": {**AAPL, "interval": "2m"}})
    assert "Interval" in errors[0]["message"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"symbol": "AAPL$"}, "symbol", "malformed symbol"),
        ({"exchange": ""}, "exchange", "malformed exchange"),
        ({"bars": 0}, "bars", "bars must be between 1 and 5000, got 0"),
        ({"bars": 5001}, "bars", "bars must be between 1 and 5000, got 5001"),
    ],
)
async def test_bad_mutation_input_changes_nothing(
    gql: GraphQLClient, resources: Resources, overrides: dict[str, Any], field: str, message: str
) -> None:
    variables = {"input": {**AAPL, "interval": "DAY_1", **overrides}}
    result = (await gql.data(SYNC_SYMBOL, variables))["syncSymbol"]
    assert result["__typename"] == "InvalidInput"
    assert result["field"] == field
    assert message in result["message"]
    assert await resources.redis.zcard(resources.settings.queue_name) == 0
    assert await SyncStatus.find_all().count() == 0


async def test_one_bad_symbol_rejects_the_whole_batch(gql: GraphQLClient, resources: Resources) -> None:
    mutation = """mutation($input: SyncSymbolsInput!) { syncSymbols(input: $input) { __typename ... on InvalidInput { message field } } }"""
    symbols = [{"exchange": "NASDAQ", "symbol": "AAPL"}, {"exchange": "NASDAQ", "symbol": "BAD SYMBOL"}]
    result = (await gql.data(mutation, {"input": {"symbols": symbols, "intervals": ["DAY_1"]}}))["syncSymbols"]
    assert result == {"__typename": "InvalidInput", "message": result["message"], "field": "symbol"}
    too_many = [{"exchange": "NASDAQ", "symbol": f"S{i}"} for i in range(101)]
    result = (await gql.data(mutation, {"input": {"symbols": too_many, "intervals": ["DAY_1"]}}))["syncSymbols"]
    assert result["field"] == "symbols"
    assert "at most 100" in result["message"]
    assert await resources.redis.zcard(resources.settings.queue_name) == 0


async def test_sync_job_queries(gql: GraphQLClient) -> None:
    assert (await gql.data('{ syncJob(id: "sync:NASDAQ:AAPL:1d") { state } }'))["syncJob"] is None
    errors = await gql.errors('{ syncJob(id: "whatever") { state } }')
    assert errors[0]["extensions"]["field"] == "id"


async def test_query_limits(gql: GraphQLClient) -> None:
    aliases = " ".join(f'a{i}: symbol(exchange: "X", symbol: "Y") {{ ticker }}' for i in range(20))
    errors = await gql.errors(f"{{ {aliases} }}")
    assert "aliases" in errors[0]["message"]
    deep = "{ trackedSymbols { items { syncStatus { symbol } } } }"
    assert "errors" not in await gql.raw(deep)


async def test_started_at_reflects_the_simulator_clock(gql: GraphQLClient, worker: Worker) -> None:
    job = await sync(gql, interval="DAY_1", bars=3)
    # AAPL's daily bar is stamped at its session open, 09:30 New York (14:30 UTC).
    assert job["result"]["lastBar"] == "2026-11-20T14:30:00+00:00"


async def test_tracked_symbols_with_their_sync_status_take_one_query(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No N+1: a page of symbols asking for syncStatus reads the statuses once."""
    from pocketquant.history.documents import SymbolRecord, SyncStatus

    now = datetime.now(UTC)
    for i in range(30):
        await SymbolRecord(
            exchange="X", symbol=f"S{i:02}", tracked=True, tracked_intervals=["1d"], updated_at=now
        ).insert()
        await SyncStatus(exchange="X", symbol=f"S{i:02}", interval="1d", state="succeeded", bar_count=i).insert()
    calls: list[object] = []
    original = SyncStatus.find

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(SyncStatus, "find", counting)
    page = (await gql.data("{ trackedSymbols(first: 100) { items { ticker syncStatus { barCount } } } }"))[
        "trackedSymbols"
    ]
    assert [item["syncStatus"][0]["barCount"] for item in page["items"]] == list(range(30))
    assert len(calls) == 1
