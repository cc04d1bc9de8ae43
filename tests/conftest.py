"""Real services for the tests: a redis-server, mongoeco's wire server, the local
TradingView simulator, the API over HTTP (uvicorn on a free port) and an arq worker
that consumes the queue."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from arq.worker import Worker

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.auth.keys import Scope
from pocketquant.infra.embedded import embedded_mongodb, embedded_redis
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime.stream import run_stream
from pocketquant.resources import Resources, open_resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from pocketquant.worker import build_worker, stop_worker
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient

# 2026-11-20 14:37:30 UTC: mid-bar for every interval, so the newest bar is in progress.
SIM_START = 1_795_185_450.0


@pytest.fixture(scope="session")
async def redis_url() -> AsyncIterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required for the tests: apt-get install -y redis-server")
    async with embedded_redis() as url:
        yield url


@pytest.fixture(scope="session")
async def mongodb_url() -> AsyncIterator[str]:
    async with embedded_mongodb(None) as url:
        yield url


@pytest.fixture(scope="session")
def sim_clock() -> ManualClock:
    return ManualClock(SIM_START)


@pytest.fixture(scope="session")
async def simulator_server(sim_clock: ManualClock) -> AsyncIterator[TradingViewSimulator]:
    async with TradingViewSimulator(clock=sim_clock) as sim:
        yield sim


@pytest.fixture
def simulator(simulator_server: TradingViewSimulator, sim_clock: ManualClock) -> TradingViewSimulator:
    """The session's simulator, reset: no faults, no delay, no quote state, the clock at SIM_START."""
    simulator_server.reset()
    sim_clock.now = SIM_START
    return simulator_server


@pytest.fixture
async def settings(mongodb_url: str, redis_url: str, simulator: TradingViewSimulator) -> Settings:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    return Settings(
        _env_file=None,
        mongodb_url=mongodb_url,
        mongodb_database=f"test_{uuid.uuid4().hex[:12]}",
        redis_url=redis_url,
        tradingview_websocket_url=simulator.websocket_url,
        tradingview_search_url=simulator.search_url,
        tradingview_timeout_seconds=5,
        sync_max_tries=3,
        sync_retry_base_seconds=0.05,
        worker_health_check_seconds=1,
        bar_close_delay_seconds=0,
        watchlist_refresh_seconds=0.1,
        stream_status_every_seconds=0.2,
        stream_lock_ttl_seconds=1.0,
        # As `pocketquant dev` runs: reads open, mutations with a key (the `gql` client's).
        auth_required=False,
        introspection=True,
        # Tests poll quickly; the limits themselves are tested with their own settings.
        rate_limit_queries_per_second=10_000,
        rate_limit_queries_burst=10_000,
        rate_limit_mutations_per_second=10_000,
        rate_limit_mutations_burst=10_000,
        rate_limit_sync_jobs_per_minute=600_000,
        rate_limit_sync_jobs_burst=10_000,
    )


@pytest.fixture
async def resources(settings: Settings, sim_clock: ManualClock) -> AsyncIterator[Resources]:
    async with open_resources(settings, clock=sim_clock) as opened:
        yield opened
        await opened.mongo.drop_database(settings.mongodb_database)


@pytest.fixture
async def worker(settings: Settings, resources: Resources) -> AsyncIterator[Worker]:
    """A real arq worker consuming the queue in the background."""
    arq_worker = build_worker(settings, resources=resources, poll_delay=0.02, handle_signals=False)
    task = asyncio.create_task(arq_worker.async_run())
    yield arq_worker
    await stop_worker(arq_worker, task)


@pytest.fixture
async def api_url(settings: Settings, resources: Resources) -> AsyncIterator[str]:
    """The API served by uvicorn on a free loopback port."""
    async with serve(create_app(settings, resources)) as url:
        yield url


@pytest.fixture
async def admin_key(resources: Resources) -> str:
    _, key = await resources.keys.create("tests", Scope.ADMIN)
    return key


@pytest.fixture
async def gql(api_url: str, admin_key: str) -> AsyncIterator[GraphQLClient]:
    """A GraphQL client with an admin key (mutations need a key)."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as http:
        yield GraphQLClient(http)


@pytest.fixture
async def anonymous(api_url: str) -> AsyncIterator[GraphQLClient]:
    """A GraphQL client without a key."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield GraphQLClient(http)


@pytest.fixture(params=["America/New_York", "Asia/Kolkata", "Pacific/Chatham"])
def non_utc_timezone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run with the process in a non-UTC zone, where naive local times would shift."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    assert time.timezone != 0
    yield request.param
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def stream_clock() -> ManualClock:
    return ManualClock(SIM_START)


@pytest.fixture
async def stream(resources: Resources, stream_clock: ManualClock) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(run_stream(resources, instance="stream-a", clock=stream_clock))
    yield task
    await cancel_and_wait(task)
