"""Benchmarks of the live path: aggregator throughput and subscription fan-out.

Each figure comes with a baseline measured in the same run: a bare loop doing only the
OHLC arithmetic for the same intervals, and a plain ``websockets`` broadcast of the
same messages to the same clients.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from pocketquant.domain import SymbolKey
from pocketquant.domain.aggregator import DEFAULT_LIVE_INTERVALS, BarAggregator
from pocketquant.realtime import wire

# -- aggregator ----------------------------------------------------------------------


def aggregator_throughput(n: int = 1_000_000, symbols: int = 10) -> tuple[float, float]:
    """Ticks per second: (aggregator with the six default intervals, bare OHLC loop)."""
    rng = random.Random(1)
    keys = [SymbolKey("BENCH", f"S{i}") for i in range(symbols)]
    ks = [keys[i % symbols] for i in range(n)]
    ts: list[int] = []
    t = 1_795_185_450
    for i in range(n):
        if i % symbols == 0:
            t += rng.choice((0, 0, 1, 1, 2))
        ts.append(t)
    ps = [100 + rng.random() for _ in range(n)]
    vs = [float(i) for i in range(n)]

    def bare() -> None:
        steps = [i.nominal_seconds for i in DEFAULT_LIVE_INTERVALS]
        state = {k: [[-1, 0.0, 0.0, 0.0, 0.0, 0.0] for _ in steps] for k in keys}
        for k, t, p, v in zip(ks, ts, ps, vs, strict=True):
            bars = state[k]
            for j, step in enumerate(steps):
                b = bars[j]
                start = t - t % step
                if b[0] != start:
                    b[0] = start
                    b[1] = b[2] = b[3] = b[4] = p
                    b[5] = v
                else:
                    if p > b[2]:
                        b[2] = p
                    if p < b[3]:
                        b[3] = p
                    b[4] = p
                    b[5] += v

    def aggregate() -> None:
        on_tick = BarAggregator(DEFAULT_LIVE_INTERVALS).on_tick
        for k, t, p, v in zip(ks, ts, ps, vs, strict=True):
            on_tick(k, t, p, v)

    best: dict[str, float] = {}
    for fn in (bare, aggregate, bare, aggregate, bare, aggregate):
        start = time.perf_counter()
        fn()
        rate = n / (time.perf_counter() - start)
        best[fn.__name__] = max(best.get(fn.__name__, 0.0), rate)
    return best["aggregate"], best["bare"]


# -- fan-out -------------------------------------------------------------------------

FANOUT_QUERY = 'subscription { liveQuotes(tickers: ["BENCH:FANOUT"]) { ticker price time bid ask volume } }'
FANOUT_KEY = SymbolKey("BENCH", "FANOUT")


@dataclass
class FanoutResult:
    name: str
    p50_ms: float
    p99_ms: float
    received: int
    expected: int
    peak_rss_mb: float  # of the benchmark process, which also runs the API and mongoeco
    start_rss_mb: float  # before the clients connected: peak - start is what the run cost


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _sent_at(message: str | bytes) -> float | None:
    """The publish time carried as a quote's price or a bar's close, found without a full
    JSON parse (the client process must stay cheaper than the server it measures)."""
    text = message.decode() if isinstance(message, bytes) else message
    for marker in ('"price":', '"close":'):
        at = text.find(marker)
        if at >= 0:
            break
    else:
        return None
    start = end = at + len(marker)
    while end < len(text) and text[end] not in ",}":
        end += 1
    try:
        value = float(text[start:end])
    except ValueError:
        return None
    return value if value > 1e9 else None  # a timed event, not a snapshot


class _RawClient(asyncio.Protocol):
    """A minimal websocket client for measuring: RFC 6455 frames parsed by hand, only far
    enough to find the price in each text message. The ``websockets`` library costs ~30 us
    per message; with 500 connections per process that alone delays the last message of
    each burst by ~15 ms and would hide the server's own latency."""

    def __init__(
        self, host: str, path: str, queries: list[str] | None, latencies: list[float], ready: asyncio.Event, index: int
    ) -> None:
        """``queries``: the subscriptions to hold over graphql-transport-ws; None for a
        plain websocket that says its connection number, then listens."""
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            + ("Sec-WebSocket-Protocol: graphql-transport-ws\r\n" if queries is not None else "")
            + "\r\n"
        ).encode()
        self._queries = queries
        self._index = index
        self._latencies = latencies
        self._ready = ready
        self._buffer = bytearray()
        self._upgraded = False
        self.error: bytes | None = None  # the first GraphQL error the server sent
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(self._request)

    def _send(self, text: str, opcode: int = 0x1) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x80 | opcode]) + (
            bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(header + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            del self._buffer[: end + 4]
            self._upgraded = True
            if self._queries is not None:
                self._send(json.dumps({"type": "connection_init"}))
                # A new id per subscription, as the graphql-ws client makes them (UUIDs):
                # no two subscribers get the same bytes, so the server frames each one.
                for query in self._queries:
                    op_id = str(uuid.uuid4())
                    self._send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
            else:
                self._send(str(self._index))
            self._ready.set()
        buf = self._buffer
        while len(buf) >= 2:
            opcode, size, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, offset = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, offset = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < offset + size:
                return
            payload = bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if opcode == 0x1:
                sent = _sent_at(payload)
                if sent is not None:
                    self._latencies.append((now - sent) * 1e3)
                elif self.error is None and b'"type":"error"' in payload:
                    self.error = payload
            elif opcode == 0x9:  # ping: answer, or the server drops us
                self._send(payload.decode(errors="replace"), opcode=0xA)


async def _client(url: str, n: int, mode: str, duration: float, first: int = 0) -> None:
    """One client process: ``n`` connections (numbered from ``first``), each holding what
    ``mode`` says (see ``queries_for``); prints READY, then after ``duration`` the
    latencies (ms) it measured."""
    from pocketquant.benchmarks.subscriptions import queries_for

    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    transports, protocols = [], []
    for i in range(first, first + n):
        ready = asyncio.Event()
        queries = [FANOUT_QUERY] if mode == "graphql" else queries_for(i) if mode == "many" else None
        factory = functools.partial(_RawClient, f"{host}:{port}", parts.path or "/", queries, latencies, ready, i)
        transport, protocol = await loop.create_connection(factory, host, port)
        transports.append(transport)
        protocols.append(protocol)
        await asyncio.wait_for(ready.wait(), 60)
        if i % 50 == 49:
            await asyncio.sleep(0.02)  # do not flood the accept queue
    await asyncio.sleep(1.0 if mode != "raw" else 0.2)  # first snapshots delivered
    latencies.clear()
    errors = [p.error for p in protocols if p.error is not None]
    print(f"ERROR {errors[0]!r}" if errors else "READY", flush=True)
    await asyncio.sleep(duration)
    for transport in transports:
        transport.abort()
    print(json.dumps(latencies), flush=True)


CLIENT_PROCESSES = 2


@contextlib.asynccontextmanager
async def clients(url: str, n: int, mode: str, duration: float) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Client processes sharing ``n`` connections; yields once all are subscribed."""
    procs = []
    try:
        first = 0
        for i in range(CLIENT_PROCESSES):
            share = n // CLIENT_PROCESSES + (1 if i < n % CLIENT_PROCESSES else 0)
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "pocketquant.benchmarks.live",
                    "client",
                    url,
                    str(share),
                    mode,
                    str(duration),
                    "--first",
                    str(first),
                    stdout=asyncio.subprocess.PIPE,
                )
            )
            first += share
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 300)
            if line.strip() != b"READY":
                raise RuntimeError(f"benchmark clients failed to start: {line!r}")
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def latencies_of(procs: list[asyncio.subprocess.Process]) -> list[float]:
    latencies: list[float] = []
    for proc in procs:
        out, _ = await proc.communicate()
        latencies += json.loads(out.decode().strip().splitlines()[-1])
    return latencies


async def _measure(
    name: str, url: str, graphql: bool, publish: Any, subscribers: int, rate: float, duration: float
) -> FanoutResult:
    """Connect the clients, publish at ``rate`` for ``duration``, collect latencies."""
    start = rss_mb(os.getpid())
    async with clients(url, subscribers, "graphql" if graphql else "raw", duration + 2) as procs:
        peak = await drive(publish, rate, duration, os.getpid())
        latencies = await latencies_of(procs)
    ordered = sorted(latencies) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    expected = int(rate * duration) * subscribers
    return FanoutResult(name, statistics.median(ordered), p99, len(latencies), expected, peak, start)


async def drive(publish: Any, rate: float, duration: float, pid: int) -> float:
    """Publish ``rate`` events per second for ``duration``; return peak RSS (MB)."""
    peak = rss_mb(pid)
    events = int(rate * duration)
    start = time.perf_counter()
    for i in range(events):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        await publish(i)
        peak = max(peak, rss_mb(pid))
    return peak


async def fanout_graphql(redis: Any, api_ws_url: str, subscribers: int, rate: float, duration: float) -> FanoutResult:
    async def publish(i: int) -> None:
        quote = {"seq": time.time_ns(), "ticker": FANOUT_KEY.ticker, "price": time.time(), "time": int(time.time()),
                 "change": 0.0, "change_percent": 0.0, "bid": float(i), "ask": float(i), "volume": float(i),
                 "session": "market"}  # fmt: skip
        await redis.publish(wire.channel(FANOUT_KEY), json.dumps({"quote": quote, "bars": []}))

    name = f"GraphQL liveQuotes, {subscribers} subscribers of one symbol"
    return await _measure(name, api_ws_url, True, publish, subscribers, rate, duration)


async def fanout_baseline(subscribers: int, rate: float, duration: float) -> FanoutResult:
    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:  # like the API: no deflate
        port = next(iter(server.sockets)).getsockname()[1]

        async def publish(i: int) -> None:
            data = {"liveQuotes": {"ticker": FANOUT_KEY.ticker, "price": time.time(), "time": int(time.time()),
                                   "bid": float(i), "ask": float(i), "volume": float(i)}}  # fmt: skip
            broadcast(connections, json.dumps({"id": "1", "type": "next", "payload": {"data": data}}))

        name = f"baseline: websockets.broadcast, {subscribers} connections"
        return await _measure(name, f"ws://127.0.0.1:{port}", False, publish, subscribers, rate, duration)


async def run_fanout(subscribers: int = 1_000, rate: float = 10.0, duration: float = 10.0) -> list[FanoutResult]:
    from pocketquant.benchmarks.harness import embedded_stack
    from pocketquant.realtime.documents import WatchedSymbol

    # The baseline first, in a process that holds nothing else yet: its memory figures
    # are its own. (RSS does not shrink, so the run that comes second may reuse memory
    # the first freed: its growth can read low, never high.)
    baseline = await fanout_baseline(subscribers, rate, duration)
    async with embedded_stack() as (resources, url):
        await WatchedSymbol(exchange="BENCH", symbol="FANOUT", added_at=datetime.now(UTC)).insert()
        graphql = await fanout_graphql(
            resources.redis, url.replace("http", "ws") + "/graphql", subscribers, rate, duration
        )
    return [graphql, baseline]


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    client = sub.add_parser("client")
    client.add_argument("url")
    client.add_argument("n", type=int)
    client.add_argument("mode", choices=["graphql", "raw", "many"])
    client.add_argument("duration", type=float)
    client.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    # The measuring clients share the machine's cores with the server they measure: on
    # uvloop they cost less per message and perturb it less (on this 2-core machine, p99
    # ~22 ms -> ~16 ms for the GraphQL run and the baseline alike). The server keeps
    # asyncio's own loop, as in production.
    import uvloop  # the bench extra: measuring clients only

    uvloop.run(_client(args.url, args.n, args.mode, args.duration, args.first))


if __name__ == "__main__":
    main()
