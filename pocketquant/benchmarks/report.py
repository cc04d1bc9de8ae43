"""The sections of `pocketquant bench`, each run on its own embedded services, and the
rows they add to the table."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

from pocketquant.benchmarks.harness import Engine, Row, render

__all__ = ["Options", "Section", "render", "run"]


class Section(enum.StrEnum):
    history = "history"
    sync = "sync"
    aggregator = "aggregator"
    stream = "stream"
    fanout = "fanout"
    subscriptions = "subscriptions"
    load = "load"
    all = "all"


@dataclass(frozen=True)
class Options:
    runs: int = 5
    requests: int = 60
    subscribers: int = 1_000
    rate: float = 10.0
    seconds: float = 10.0
    clients: int = 200


def run(section: Section, options: Options, say: Callable[[str], object] = print) -> list[Row]:
    rows: list[Row] = []
    for name, measure in _SECTIONS.items():
        if section in (name, Section.all):
            rows += measure(options, say)
    return rows


def _history(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks import history

    say(f"history: {o.runs} store runs, {o.requests} requests per query ...")
    return asyncio.run(history.run(o.runs, o.requests))


def _sync(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks.sync import run_sync_bench

    rows = []
    for engine in (Engine.sqlite, Engine.memory):
        say(f"sync: 100 symbols x 5,000 1m bars through the worker, mongoeco's {engine} engine ...")
        synced = asyncio.run(run_sync_bench(100, engine))
        rows.append(
            Row(
                f"sync {synced.symbols} symbols x 5,000 1m bars through a worker (simulator, mongoeco {engine})",
                f"{synced.seconds:.1f} s, {synced.bars_per_second:,.0f} bars/s; {synced.stored:,} bars stored",
                "< 30 s",
            )
        )
        rows.append(
            Row(
                "baseline: the same fetches from the simulator, not stored (10 at a time)",
                f"{synced.fetch_only_seconds:.1f} s",
            )
        )
    return rows


def _aggregator(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks.live import aggregator_throughput

    say("aggregator: 1,000,000 ticks, 10 symbols, 6 intervals, best of 3 ...")
    agg, bare = aggregator_throughput()
    return [
        Row("aggregator, 6 default intervals, all semantics", f"{agg:,.0f} ticks/s", ">= 1,000,000"),
        Row("baseline: bare OHLC loop, 6 intervals", f"{bare:,.0f} ticks/s (aggregator: {agg / bare:.2f}x)"),
    ]


def _stream(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks.stream import run_stream_bench

    say(f"stream: 500 watched symbols, simulator firehose for {o.seconds}s ...")
    s = asyncio.run(run_stream_bench(500, o.seconds))
    return [
        Row(
            f"stream, {s.symbols} symbols: quote frames -> parse, merge, aggregate, publish to Redis",
            f"{s.ticks_per_second:,.0f} ticks/s sustained on one core ({s.published:,} updates published, "
            f"{s.merged:,} quotes merged into newer ones under overload); "
            f"CPU {s.cpu_us_per_tick:.1f} us/tick; alone: parse {s.parse_us:.1f}, aggregate {s.aggregate_us:.1f}, "
            f"encode + publish {s.publish_us:.1f} us/tick",
            ">= 20,000 ticks/s",
        ),
        Row("baseline: parsing the same frames alone", f"{s.baseline_ticks_per_second:,.0f} ticks/s"),
    ]


def _fanout(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks.live import run_fanout

    say(f"fan-out: {o.subscribers} subscribers, {o.rate}/s for {o.seconds}s ...")
    return [
        Row(
            r.name,
            f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms; delivered {r.received:,}/{r.expected:,}; "
            f"peak RSS {r.peak_rss_mb:.0f} MB (+{r.peak_rss_mb - r.start_rss_mb:.0f} MB over the run)",
            "p99 < 25 ms" if r.name.startswith("GraphQL") else "",
        )
        for r in asyncio.run(run_fanout(o.subscribers, o.rate, o.seconds))
    ]


def _subscriptions(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks.subscriptions import PER_CONNECTION, SYMBOLS, run_subscriptions

    updates = 500.0
    say(
        f"subscriptions: {o.subscribers} connections x {PER_CONNECTION} over {SYMBOLS} symbols, {updates:.0f} updates/s"
    )
    return [
        Row(
            r.name,
            f"{r.deliveries_per_second:,.0f} deliveries/s ({r.received:,}/{r.expected:,}); p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms; RSS {r.start_rss_mb:.0f} -> {r.subscribed_rss_mb:.0f} MB subscribed "
            f"({r.kb_per_subscription:.1f} KB per subscription), peak {r.peak_rss_mb:.0f} MB",
            "p99 < 50 ms at 10,000 deliveries/s" if r.name.startswith("GraphQL") else "",
        )
        for r in asyncio.run(run_subscriptions(o.subscribers, updates, o.seconds))
    ]


def _load(o: Options, say: Callable[[str], object]) -> list[Row]:
    from pocketquant.benchmarks.load import run_bar_load

    say(f"load: {o.clients} clients reading 1,000-bar pages of 50 series for {o.seconds}s ...")
    rows = []
    for objects in (False, True):
        load = asyncio.run(run_bar_load(clients=o.clients, duration=o.seconds, objects=objects))
        rows.append(
            Row(
                load.name,
                f"{load.pages_per_second:,.0f} pages/s, p50 {load.page_p50_ms:.0f} ms, p99 {load.page_p99_ms:.0f} "
                f"ms; /health meanwhile p50 {load.health_p50_ms:.1f} ms, p99 {load.health_p99_ms:.1f} ms; longest "
                f"loop stall {load.max_stall_ms:.0f} ms; errors {load.errors}; stream lock lost {load.lock_lost}x",
                "/health p99 < 100 ms, stall < 50 ms, page p99 < 250 ms, lock kept" if not objects else "",
            )
        )
    return rows


_SECTIONS: dict[Section, Callable[[Options, Callable[[str], object]], list[Row]]] = {
    Section.history: _history,
    Section.sync: _sync,
    Section.aggregator: _aggregator,
    Section.stream: _stream,
    Section.fanout: _fanout,
    Section.subscriptions: _subscriptions,
    Section.load: _load,
}
