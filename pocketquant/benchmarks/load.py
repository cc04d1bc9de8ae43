"""Bars under concurrent load, and what that load does to the rest of the process.

One process runs the API and a stream (as `pocketquant dev` does) on embedded services.
A client process keeps ``clients`` connections each asking for 1,000-bar pages of
``symbols`` series as fast as answers come, and one more connection asks for /health
every 50 ms. Reported, after a second of warm-up: page latency and throughput, /health
latency (what every other request of the process sees meanwhile), the event loop's
longest stall (over the whole run), and whether the stream kept its Redis lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pocketquant.domain import BarColumns, Interval, SeriesKey
from pocketquant.simulator.market import Instrument, SimulatedMarket, forget_splits

if TYPE_CHECKING:
    from pocketquant.resources import Resources

WARM_UP = 1.0

QUERY = """query($s: String!, $n: Int!) { bars(exchange: "BENCH", symbol: $s, interval: MINUTE_1, first: $n) {
  count columns { t o h l c v } } }"""
QUERY_OBJECTS = """query($s: String!, $n: Int!) { bars(exchange: "BENCH", symbol: $s, interval: MINUTE_1, first: $n) {
  count bars { time open high low close volume } } }"""


@dataclass(frozen=True, slots=True)
class LoadResult:
    name: str
    pages: int
    pages_per_second: float
    page_p50_ms: float
    page_p99_ms: float
    health_p50_ms: float
    health_p99_ms: float
    max_stall_ms: float
    errors: int
    lock_lost: int


def _p(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


async def run_bar_load(
    clients: int = 200, symbols: int = 50, bars: int = 1_000, duration: float = 10.0, objects: bool = False
) -> LoadResult:
    from pocketquant.benchmarks.harness import embedded_stack
    from pocketquant.realtime.documents import WatchedSymbol
    from pocketquant.realtime.stream import run_stream

    lost = _Counter("leadership lost")
    logging.getLogger("pocketquant.realtime.leader").addHandler(lost)
    async with embedded_stack(ticks=True) as (resources, url):
        await _store_series(resources, symbols, bars)
        await WatchedSymbol(exchange="BINANCE", symbol="BTCUSDT", added_at=datetime.now(UTC)).insert()
        stream = asyncio.create_task(run_stream(resources, instance="bench"))
        try:
            await asyncio.sleep(1.0)  # the stream takes the lock
            watch = _loop_watch()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pocketquant.benchmarks.load", "client", url,
                str(clients), str(symbols), str(bars), str(duration), "objects" if objects else "columns",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            max_stall = watch.max_stall
            await watch.close()
        finally:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)
    logging.getLogger("pocketquant.realtime.leader").removeHandler(lost)
    report = json.loads(out)
    pages: list[float] = report["pages"]
    health: list[float] = report["health"]
    form = "objects" if objects else "columnar"
    return LoadResult(
        name=f"{clients} clients, 1,000-bar {form} pages of {symbols} series",
        pages=len(pages),
        pages_per_second=len(pages) / duration,
        page_p50_ms=statistics.median(pages) * 1e3 if pages else float("nan"),
        page_p99_ms=_p(pages, 0.99),
        health_p50_ms=statistics.median(health) * 1e3 if health else float("nan"),
        health_p99_ms=_p(health, 0.99),
        max_stall_ms=max_stall * 1e3,
        errors=report["errors"],
        lock_lost=lost.count,
    )


async def _store_series(resources: Resources, symbols: int, bars: int) -> None:
    """The series the clients read. The tape that made them is dropped afterwards: it is
    the simulator's (~100,000 objects), not the API's, and kept it made every full pass
    of the garbage collector walk it during the measurement (gen-2 passes of ~40 ms,
    the run's longest loop stalls)."""
    market = SimulatedMarket()
    now = int(time.time())
    for i in range(symbols):
        instrument = Instrument("BENCH", f"S{i}", f"bench {i}", "stock", "USD", "Etc/UTC", 100.0 + i, 2)
        history = market.history(instrument, Interval.MINUTE_1, bars, now)
        await resources.store.write(SeriesKey("BENCH", f"S{i}", Interval.MINUTE_1), BarColumns.from_bars(history))
    forget_splits()


def _loop_watch() -> Any:
    from pocketquant.api.loopwatch import LoopWatch

    watch = LoopWatch(period=0.005)
    watch.start()
    return watch


class _Counter(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.count += 1


# -- the client process ------------------------------------------------------------


class _Http:
    """A minimal HTTP/1.1 keep-alive client: the measuring side must cost little."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload


async def _client(url: str, clients: int, symbols: int, bars: int, duration: float, form: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pages: list[float] = []
    health: list[float] = []
    errors = 0
    # The first second (cold caches, every client connecting) is not recorded.
    recording = time.perf_counter() + WARM_UP
    deadline = recording + duration
    query = QUERY_OBJECTS if form == "objects" else QUERY

    async def reader(i: int) -> None:
        nonlocal errors
        http = _Http(host, port)
        rng = random.Random(i)
        while time.perf_counter() < deadline:
            body = json.dumps({"query": query, "variables": {"s": f"S{rng.randrange(symbols)}", "n": bars}})
            started = time.perf_counter()
            status, payload = await http.request("POST", "/graphql", body.encode())
            if started < recording:
                continue
            if status != 200 or b'"errors"' in payload[:200]:
                errors += 1
            else:
                pages.append(time.perf_counter() - started)

    async def prober() -> None:
        http = _Http(host, port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await http.request("GET", "/health")
            if started >= recording:
                health.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)

    await asyncio.gather(prober(), *(reader(i) for i in range(clients)))
    print(json.dumps({"pages": pages, "health": health, "errors": errors}))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    client = sub.add_parser("client")
    client.add_argument("url")
    client.add_argument("clients", type=int)
    client.add_argument("symbols", type=int)
    client.add_argument("bars", type=int)
    client.add_argument("duration", type=float)
    client.add_argument("form", choices=["columns", "objects"])
    args = parser.parse_args()
    import uvloop  # the bench extra: measuring clients only

    uvloop.run(_client(args.url, args.clients, args.symbols, args.bars, args.duration, args.form))


if __name__ == "__main__":
    main()
