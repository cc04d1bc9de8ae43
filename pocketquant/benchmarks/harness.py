"""What every benchmark shares: result rows, embedded services in a throw-away directory,
the whole stack served on loopback, and helper processes (a simulator, load clients)
that say "ready" on their first line."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pocketquant.infra.embedded import embedded_redis, mongodb_process
from pocketquant.resources import Resources, open_resources
from pocketquant.settings import Settings


@dataclass
class Row:
    name: str
    value: str
    target: str = ""


def render(rows: list[Row]) -> str:
    lines = ["| measurement | result | target |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.value} | {r.target} |" for r in rows]
    return "\n".join(lines)


class Engine(StrEnum):
    """mongoeco's engine: ``sqlite`` is what `pocketquant dev` keeps its data in;
    ``memory`` keeps nothing across restarts and has no per-write collection scans."""

    sqlite = "sqlite"
    memory = "memory"


@contextlib.asynccontextmanager
async def embedded_services(engine: Engine = Engine.sqlite) -> AsyncIterator[tuple[str, str]]:
    """mongoeco in its own process (on a SQLite file in a temporary directory, or in
    memory) and a local Redis; yields their URLs."""
    with tempfile.TemporaryDirectory(prefix="pocketquant-bench-") as tmp:
        path = Path(tmp) / "bench.sqlite3" if engine is Engine.sqlite else None
        async with mongodb_process(path) as mongo_url, embedded_redis() as redis_url:
            yield mongo_url, redis_url


def services_settings(mongo_url: str, redis_url: str, simulator_port: int) -> Settings:
    """Settings for embedded services and a simulator process on ``simulator_port``."""
    return Settings(
        _env_file=None,
        mongodb_url=mongo_url,
        redis_url=redis_url,
        tradingview_websocket_url=f"ws://127.0.0.1:{simulator_port}/socket.io/websocket",
        tradingview_search_url=f"http://127.0.0.1:{simulator_port}/symbol_search/v3/",
    )


@contextlib.asynccontextmanager
async def helper_process(module: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m module args...`` until the block ends; yields once it printed "ready"."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip().lower() != b"ready":
            raise RuntimeError(f"{module} did not start: {line!r}")
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def embedded_stack(ticks: bool = False) -> AsyncIterator[tuple[Resources, str]]:
    """Everything a benchmark of the API needs, embedded and thrown away afterwards:
    mongoeco on a SQLite file, a local Redis, the simulator in this process (ticking
    its quoted symbols with ``ticks``), and the API served on loopback. Yields the open
    resources and the API's base URL."""
    from pocketquant.api.app import create_app
    from pocketquant.api.serving import serve
    from pocketquant.simulator import TradingViewSimulator

    async with embedded_services() as (mongo_url, redis_url), TradingViewSimulator() as sim:
        if ticks:
            sim.start_auto_ticks()
        settings = Settings(
            _env_file=None,
            mongodb_url=mongo_url,
            redis_url=redis_url,
            tradingview_websocket_url=sim.websocket_url,
            tradingview_search_url=sim.search_url,
            # The benchmarks measure the service's work, from one client address:
            # no key checks and no rate limits.
            auth_required=False,
            rate_limit_queries_per_second=0,
            rate_limit_mutations_per_second=0,
            rate_limit_sync_jobs_per_minute=0,
        )
        async with open_resources(settings) as resources, serve(create_app(settings, resources)) as url:
            yield resources, url
