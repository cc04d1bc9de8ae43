"""`/metrics` as Prometheus scrapes it, after real requests, a real worker's sync job, a
stream and an open subscription."""

import asyncio
from typing import Any

import httpx
from arq.worker import Worker
from prometheus_client.parser import text_string_to_metric_families

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.auth.keys import Scope
from pocketquant.domain import SymbolKey
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from tests.utils.graphql import GraphQLClient
from tests.utils.live import raw_subscriber, watching


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(api_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return _samples(response.text)


async def test_metrics_after_requests_a_sync_and_a_stream(
    gql: GraphQLClient, api_url: str, worker: Worker, stream: asyncio.Task[None]
) -> None:
    bars = '{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1) { count } }'
    sync = 'mutation { syncSymbol(input: {exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, bars: 20}) { ... on SyncEnqueued { jobId } } }'
    await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"])
    for _ in range(3):
        await gql.data(bars)  # a miss, then hits
    await gql.errors('{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: 0) { count } }')
    await watching(gql, SymbolKey("BINANCE", "BTCUSDT"))
    document = 'subscription { liveQuotes(tickers: ["BINANCE:BTCUSDT"]) { price } }'
    ws = await raw_subscriber(api_url.replace("http", "ws") + "/graphql", "q", document, {})
    try:
        await ws.recv()  # the subscription is open
        m = await _scrape(api_url)
    finally:
        await ws.close()

    def value(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("pocketquant_graphql_request_seconds_count", operation="query", field="bars") >= 4
    assert value("pocketquant_graphql_request_seconds_count", operation="mutation", field="syncSymbol") == 1
    assert value("pocketquant_graphql_errors_total", code="BAD_USER_INPUT") == 1
    assert value("pocketquant_bar_cache_reads_total", result="miss") >= 1
    assert value("pocketquant_bar_cache_reads_total", result="hit") >= 2
    assert value("pocketquant_bar_cache_generations_followed") == 1
    assert ("pocketquant_bar_cache_generation_reads_total", ()) in m
    assert value("pocketquant_sync_jobs_total", outcome="ok") == 1
    assert value("pocketquant_sync_job_seconds_count") == 1
    assert value("pocketquant_sync_job_seconds_bucket", le="+Inf") == 1
    assert value("pocketquant_sync_queue_depth") == 0
    assert value("pocketquant_live_subscribers") == 1
    assert value("pocketquant_redis_up") == 1
    assert value("pocketquant_stream_running") == 1
    assert value("pocketquant_stream_watched_symbols", instance="stream-a") == 1
    assert ("pocketquant_stream_bars_persisted_total", (("instance", "stream-a"),)) in m
    assert ("pocketquant_event_loop_max_stall_seconds", ()) in m


async def test_metrics_need_a_read_key_when_auth_is_required(settings: Settings, resources: Resources) -> None:
    _, key = await resources.keys.create("prometheus", Scope.READ)
    guarded = settings.model_copy(update={"auth_required": True})
    async with serve(create_app(guarded, resources)) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        assert "read" in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
        scraped: dict[Any, float] = await _scrape(url, Authorization=f"Bearer {key}")
        assert ("pocketquant_redis_up", ()) in scraped
    # A key that is sent must be valid even where none is needed (as for GraphQL and
    # exports): a scraper with a revoked key is told, not served anonymously.
    async with serve(create_app(settings, resources)) as url, httpx.AsyncClient(base_url=url) as http:
        bad = await http.get("/metrics", headers={"Authorization": "Bearer pq_nonsense"})
        assert bad.status_code == 401, bad.text
        assert (await http.get("/metrics")).status_code == 200
