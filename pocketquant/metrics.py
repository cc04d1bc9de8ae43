"""Metrics in Prometheus' text format, served by the API at ``/metrics``.

Two kinds, one scrape:

- this API process's own (a registry per app): GraphQL request latency by operation
  type and root field, errors by code, live subscribers and groups, updates written
  and dropped, the bar cache's hits and misses, the event loop's longest stall;
- the deployment's, kept in Redis so that every API replica reports the same and no
  worker or stream needs a port of its own: sync jobs by outcome and their duration
  (each worker adds its jobs), the queue's depth, and the stream leader's status (it
  writes it every ``STREAM_STATUS_EVERY_SECONDS``).

Labels are bounded: operation types, the schema's root fields, error codes, outcomes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from pocketquant.realtime.wire import StreamReport, read_report

SYNC_JOBS_KEY = "pocketquant:metrics:sync-jobs"  # hash: outcome -> count
SYNC_SECONDS_KEY = "pocketquant:metrics:sync-seconds"  # hash: bucket bound (or "sum", "count") -> value
SYNC_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class JobOutcome(StrEnum):
    """How a sync job attempt ended: ``retried`` will run again."""

    OK = "ok"
    FAILED = "failed"
    RETRIED = "retried"


async def record_sync_job(redis: Redis, outcome: JobOutcome, seconds: float) -> None:
    """Count one finished sync job attempt in Redis."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(SYNC_JOBS_KEY, outcome.value, 1)
        for bound in SYNC_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(SYNC_SECONDS_KEY, str(bound), 1)
        pipe.hincrby(SYNC_SECONDS_KEY, "count", 1)
        pipe.hincrbyfloat(SYNC_SECONDS_KEY, "sum", seconds)
        await pipe.execute()


class ApiMetrics:
    """The API process's metrics. ``live`` reads the live path's numbers at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "pocketquant_graphql_request_seconds",
            "GraphQL operations by type and root field, from parse to result.",
            ["operation", "field"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter("pocketquant_graphql_errors", "GraphQL errors by code.", ["code"], registry=self.registry)

    def watch(self, read: Callable[[], dict[str, Any]]) -> None:
        """Report the live path's numbers, as ``read`` returns them at scrape time."""
        self.registry.register(_LiveCollector(read))

    async def render(self, redis: Redis, stream_status_key: str, queue_key: str) -> bytes:
        deployment = CollectorRegistry()
        deployment.register(await _DeploymentCollector.read(redis, stream_status_key, queue_key))
        return generate_latest(self.registry) + generate_latest(deployment)


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        live = self._read()
        yield GaugeMetricFamily("pocketquant_live_subscribers", "Open live subscriptions.", value=live["subscribers"])
        yield GaugeMetricFamily(
            "pocketquant_live_groups", "Distinct subscriptions shared by subscribers.", value=live["groups"]
        )
        yield GaugeMetricFamily(
            "pocketquant_live_pending_updates", "Updates waiting for slow subscribers.", value=live["pending"]
        )
        yield _counter("pocketquant_live_updates_written", "Updates written, by path.", "path", live["written"])
        yield CounterMetricFamily(
            "pocketquant_live_updates_dropped",
            "Updates replaced by newer ones for slow subscribers.",
            value=live["dropped"],
        )
        yield _counter("pocketquant_bar_cache_reads", "Bar page reads, by the cache's answer.", "result", live["cache"])
        generations = live["generations"]
        yield GaugeMetricFamily(
            "pocketquant_bar_cache_generations_followed",
            "1 while this process follows generation changes (cached pages served without asking Redis).",
            value=1 if generations["followed"] else 0,
        )
        yield CounterMetricFamily(
            "pocketquant_bar_cache_generation_reads",
            "Series generations read from Redis (each read of a page does one when not following).",
            value=generations["generation_reads"],
        )
        yield GaugeMetricFamily(
            "pocketquant_event_loop_max_stall_seconds",
            "Longest event loop stall in the last minute.",
            value=live["stall"],
        )


@dataclass(eq=False)  # registries keep collectors in a dict: they hash by identity
class _DeploymentCollector(Collector):
    sync_jobs: dict[str, float] = field(default_factory=dict)
    sync_seconds: dict[str, float] = field(default_factory=dict)
    queued: int = 0
    stream: StreamReport | None = None
    redis_ok: bool = True

    @classmethod
    async def read(cls, redis: Redis, stream_status_key: str, queue_key: str) -> _DeploymentCollector:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(SYNC_JOBS_KEY)
                pipe.hgetall(SYNC_SECONDS_KEY)
                pipe.zcard(queue_key)
                pipe.get(stream_status_key)
                jobs, seconds, queued, status = await pipe.execute()
        except Exception:  # an outage is a metric too, not a failed scrape
            return cls(redis_ok=False)
        return cls(_floats(jobs), _floats(seconds), int(queued), read_report(status))

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("pocketquant_redis_up", "Redis answered this scrape.", value=1 if self.redis_ok else 0)
        outcomes = {o.value: self.sync_jobs.get(o.value, 0.0) for o in JobOutcome}
        yield _counter("pocketquant_sync_jobs", "Sync job attempts finished, by outcome.", "outcome", outcomes)
        seconds = self.sync_seconds
        buckets = [(str(b), seconds.get(str(b), 0.0)) for b in SYNC_BUCKETS] + [("+Inf", seconds.get("count", 0.0))]
        yield HistogramMetricFamily(
            "pocketquant_sync_job_seconds",
            "Sync job attempts' duration.",
            buckets=buckets,
            sum_value=seconds.get("sum", 0.0),
        )
        yield GaugeMetricFamily("pocketquant_sync_queue_depth", "Sync jobs waiting in the queue.", value=self.queued)
        yield from _stream_families(self.stream)


def _counter(name: str, text: str, label: str, values: dict[str, float]) -> CounterMetricFamily:
    """A counter with one labelled sample per entry of ``values``."""
    family = CounterMetricFamily(name, text, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


def _floats(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in raw.items()}


def _stream_families(report: StreamReport | None) -> Iterator[Metric]:
    running = report is not None and time.time() - report["reported_at_epoch"] < 30
    yield GaugeMetricFamily(
        "pocketquant_stream_running", "A stream leader reported in the last 30 s.", value=int(running)
    )
    if report is None or not running:
        return
    status: dict[str, object] = dict(report)
    gauges = {
        "connected": ("pocketquant_stream_connected", "The leader's TradingView connection is open."),
        "ticks_per_second": ("pocketquant_stream_ticks_per_second", "Trades received per second (last 10 s)."),
        "persist_backlog": ("pocketquant_stream_persist_backlog", "Closed bars waiting to be stored."),
        "watched": ("pocketquant_stream_watched_symbols", "Symbols on the watch list."),
    }
    counters = {
        "bars_closed": ("pocketquant_stream_bars_closed", "Bars closed by this leader."),
        "bars_persisted": ("pocketquant_stream_bars_persisted", "Closed bars stored by this leader."),
        "reconnects": ("pocketquant_stream_reconnects", "Reconnections to TradingView by this leader."),
        "late_ticks": ("pocketquant_stream_late_ticks", "Trades older than their bar."),
        "outside_session_ticks": ("pocketquant_stream_outside_session_ticks", "Trades outside the regular session."),
    }
    instance = str(status.get("instance", ""))
    for key, (name, text) in gauges.items():
        value = status.get(key)
        if isinstance(value, list):
            value = len(value)
        if isinstance(value, bool | int | float):
            family = GaugeMetricFamily(name, text, labels=["instance"])
            family.add_metric([instance], float(value))
            yield family
    for key, (name, text) in counters.items():
        value = status.get(key)
        if isinstance(value, int | float):
            counter = CounterMetricFamily(name, text, labels=["instance"])
            counter.add_metric([instance], float(value))
            yield counter
