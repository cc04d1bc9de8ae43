"""The stream process: the one TradingView quote connection, the aggregator, the
persistence of completed bars, and publishing to Redis.

Per quote update it publishes one message on the symbol's channel (the quote and, for
trades, every bar in progress) and refreshes the symbol's snapshot hash, in one Redis
round trip. Closed bars are published at once and queued for MongoDB; the queue is
retried until written, so a failing store delays bars but loses none. Partial bars
(the first of each interval after start-up or a takeover) are published, marked, but
not stored: they would overwrite complete history with a fragment. Their close asks
for a history sync of the series instead (if history is kept for it), from the newest
stored bar on: the bar, and whatever closed while no stream ran, come from TradingView.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from pocketquant.domain import BarColumns, SeriesKey, SymbolKey
from pocketquant.domain.aggregator import BarAggregator, LiveBar
from pocketquant.domain.bars import Bar
from pocketquant.domain.sessions import Calendar, InvalidSessionError, parse_holidays
from pocketquant.history.documents import SymbolRecord, SyncStatus
from pocketquant.infra.backoff import backoff_delay
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime import wire
from pocketquant.realtime.documents import WatchedSymbol
from pocketquant.realtime.leader import LeaderLock, run_as_leader
from pocketquant.resources import Resources
from pocketquant.tradingview.history import ProviderError
from pocketquant.tradingview.quotes import QuoteClient, QuoteUpdate

log = logging.getLogger(__name__)

_CLOCK_PERIOD = 0.2  # how often quiet bars are checked for closing
_OUTBOX_MAX = 100_000  # updates waiting for Redis, at most (then the oldest are dropped)
_MERGE_ABOVE = 1_000  # updates waiting beyond which a symbol's quotes in a batch are merged


def _encode(item: wire.QuotePayload | wire.BarPayload) -> str:
    return json.dumps(item, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class _Pending:
    """An update waiting for Redis: a quote (``state``; a trade if ``traded``) with its
    bars in progress, or a closed bar (``state`` None)."""

    key: SymbolKey
    state: dict[str, Any] | None
    bars: tuple[LiveBar, ...]
    traded: bool


class StreamService:
    def __init__(self, resources: Resources, instance: str, clock: Callable[[], float] = time.time) -> None:
        settings = resources.settings
        self._resources = resources
        self._settings = settings
        self._instance = instance
        self._clock = clock
        self._closed: list[LiveBar] = []
        self.aggregator = BarAggregator(
            settings.live_intervals, self._closed.append, close_delay=settings.bar_close_delay_seconds
        )
        token = settings.tradingview_auth_token
        self.client = QuoteClient(
            settings.tradingview_websocket_url,
            self._on_update,
            origin=settings.tradingview_origin,
            auth_token=token.get_secret_value() if token else None,
            wall_clock=clock,
            on_disconnected=self.aggregator.interrupted,
        )
        self._calendars: dict[SymbolKey, Calendar | None] = {}  # sessions of streamed symbols
        self._persist: asyncio.Queue[LiveBar] = asyncio.Queue()
        self._writing: list[LiveBar] = []  # the batch being stored
        self._seq = time.time_ns()  # increases across restarts and failovers
        self._tick_times: deque[float] = deque(maxlen=100_000)
        self._last_tick_at: float | None = None
        self.bars_closed = 0
        self.bars_persisted = 0
        # Updates for Redis, sent in batches by _publish_loop.
        self._outbox: deque[_Pending] = deque(maxlen=_OUTBOX_MAX)
        self._outbox_ready = asyncio.Event()
        self.updates_published = 0
        self.updates_merged = 0  # quote updates merged into a newer one of the same batch
        self.updates_dropped = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def run(self) -> None:
        """Stream until cancelled (a stop signal, or the lock lost); then store the
        closed bars still waiting, for up to STREAM_DRAIN_SECONDS."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watchlist_loop(), name="stream-watchlist")
                group.create_task(self.client.run(), name="stream-quotes")
                group.create_task(self._clock_loop(), name="stream-clock")
                group.create_task(self._persist_loop(), name="stream-persist")
                group.create_task(self._status_loop(), name="stream-status")
                group.create_task(self._publish_loop(), name="stream-publish")
        finally:
            await self._drain()

    async def _drain(self) -> None:
        """Store what closed but is not stored yet. Bars still in progress are dropped:
        they are incomplete, and the next leader sees them as partial."""
        pending = list(self._writing)
        while not self._persist.empty():
            pending.append(self._persist.get_nowait())
        if not pending:
            return
        try:
            async with asyncio.timeout(self._settings.stream_drain_seconds):
                while True:
                    try:
                        await self._write(pending)
                        break
                    except Exception as exc:  # keep trying until the grace period ends
                        log.warning("storing %d closed bars before stopping failed (%s); retrying", len(pending), exc)
                        await asyncio.sleep(0.5)
            log.info("stored %d closed bars before stopping", len(pending))
        except TimeoutError:
            log.error(
                "stopping with %d closed bars not stored (MongoDB did not take them in %.0f s); "
                "a history sync of their series fills them in",
                len(pending),
                self._settings.stream_drain_seconds,
            )

    # -- inputs --------------------------------------------------------------------

    async def _watchlist_loop(self) -> None:
        while True:
            try:
                docs = await WatchedSymbol.find_all().to_list()
                wanted = {SymbolKey(d.exchange, d.symbol) for d in docs}
                await self._learn_sessions(wanted - self._calendars.keys())
                # A symbol streams once its sessions are known: its bars are aligned to
                # them from its first tick (UTC bars of a stock would land beside the
                # history's session-aligned ones).
                ready = {k for k in wanted if k in self._calendars}
                removed = self.client.watched - ready
                await self.client.set_watched(ready)
                for key in removed:
                    self.aggregator.forget(key)
                    self._calendars.pop(key, None)
                    await self._resources.redis.delete(wire.snapshot_key(key))
            except Exception as exc:  # keep streaming what we have; try again shortly
                log.warning("watchlist refresh failed: %s", exc)
            await asyncio.sleep(self._settings.watchlist_refresh_seconds)

    async def _learn_sessions(self, keys: set[SymbolKey]) -> None:
        """Each symbol's session calendar: from its stored record, else from TradingView.
        A symbol whose sessions cannot be learned now waits (tried again next round)."""
        if not keys:
            return
        known: dict[SymbolKey, tuple[str, str, str | None]] = {}
        for record in await SymbolRecord.find(
            {"$or": [{"exchange": k.exchange, "symbol": k.symbol} for k in keys]}
        ).to_list():
            if record.session and record.timezone:
                known[SymbolKey(record.exchange, record.symbol)] = (record.session, record.timezone, record.holidays)
        ask = sorted(keys - known.keys())
        if ask:
            try:
                answers = await self._resources.symbols.metadata(ask)
            except ProviderError as exc:
                log.warning("sessions of %d symbols not learned yet (%s); they wait", len(ask), exc)
                answers = {}
            for key, meta in answers.items():
                if meta is None:
                    self._calendars[key] = None  # unknown to TradingView: it says so itself
                elif meta.session and meta.timezone:
                    known[key] = (meta.session, meta.timezone, meta.holidays)
                    # Kept with the symbol: gap checks and resampling need its sessions too.
                    await SymbolRecord.get_pymongo_collection().update_one(
                        {"exchange": key.exchange, "symbol": key.symbol},
                        {
                            "$set": {"session": meta.session, "timezone": meta.timezone, "holidays": meta.holidays},
                            "$setOnInsert": {
                                "tracked": False,
                                "tracked_intervals": [],
                                "updated_at": datetime.now(UTC),
                            },
                        },
                        upsert=True,
                    )
                else:
                    self._calendars[key] = None  # no session given: UTC, as for 24x7
        for key, (session, timezone, holidays) in known.items():
            try:
                calendar = Calendar.parse(session, timezone, parse_holidays(holidays))
            except InvalidSessionError as exc:
                self.client.stats.symbol_errors[key.ticker] = f"trading session not understood: {exc}"
                log.warning("%s does not stream: %s", key, exc)
                continue
            self._calendars[key] = calendar
            self.aggregator.set_calendar(key, calendar)

    async def _on_update(self, update: QuoteUpdate) -> None:
        bars: tuple[LiveBar, ...] = ()
        state = update.state
        volume = state.get("volume")
        total = float(volume) if isinstance(volume, int | float) else None
        if update.snapshot:
            # The symbol's state as this connection starts: its last trade may be long
            # past. From now on every trade is received; bars already begun are partial.
            self.aggregator.receiving(update.key, update.received_at, total)
        elif update.is_trade:
            lp_time = state.get("lp_time")
            t = float(lp_time) if isinstance(lp_time, int | float) else update.received_at
            self.aggregator.on_tick(update.key, t, float(state["lp"]), total)
            self._tick_times.append(update.received_at)
            self._last_tick_at = update.received_at
            if len(self._outbox) <= _MERGE_ABOVE:  # else the batch is merged and takes the bars then
                bars = tuple(self.aggregator.current(update.key))
        # Closes first: a tick that opens a new bar closed the previous one, and
        # subscribers (and the snapshot) must see them in that order.
        self._flush_closed()
        self._outbox_put(_Pending(update.key, update.state, bars, update.is_trade))

    async def _clock_loop(self) -> None:
        while True:
            self.aggregator.on_time(self._clock())
            self._flush_closed()
            await asyncio.sleep(_CLOCK_PERIOD)

    # -- outputs -------------------------------------------------------------------

    def _outbox_put(self, item: _Pending) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            self.updates_dropped += 1  # Redis is far behind: the oldest update goes (lossy by design)
        self._outbox.append(item)
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        """Send queued updates to Redis, in order, in one pipeline per round trip.

        Updates queue up while a round trip is under way; normally every one is sent
        (the API keeps a short backlog per symbol, so subscribers that keep up get them
        all). When more than ``_MERGE_ABOVE`` are waiting (the stream is falling behind),
        a symbol's quote updates in the batch go out as one, its newest, with its bars as
        they stand then; closed bars always go out, each on its own. Each item is encoded
        here, once; each symbol's snapshot fields are set once per batch (newest wins)."""
        redis = self._resources.redis
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch = list(self._outbox)
            self._outbox.clear()
            merge = len(batch) > _MERGE_ABOVE
            newest: dict[SymbolKey, int] = {}
            traded: set[SymbolKey] = set()
            if merge:
                for i, item in enumerate(batch):
                    if item.state is not None:
                        newest[item.key] = i
                        if item.traded:
                            traded.add(item.key)
            snapshots: dict[SymbolKey, dict[str, str]] = {}
            messages: list[tuple[SymbolKey, str]] = []
            for i, item in enumerate(batch):
                bars = item.bars
                if merge and item.state is not None:
                    if newest[item.key] != i:
                        self.updates_merged += 1
                        continue
                    bars = tuple(self.aggregator.current(item.key)) if item.key in traded else ()
                bar_jsons = [_encode(wire.bar_payload(b, self._next_seq())) for b in bars]
                snapshot = snapshots.setdefault(item.key, {})
                snapshot.update({f"bar:{b.interval.value}": j for b, j in zip(bars, bar_jsons, strict=True)})
                quote_json = "null"
                if item.state is not None:
                    quote_json = snapshot["quote"] = _encode(wire.quote_payload(item.key, item.state, self._next_seq()))
                messages.append((item.key, f'{{"quote":{quote_json},"bars":[{",".join(bar_jsons)}]}}'))
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    for key, fields in snapshots.items():
                        if fields:
                            pipe.hset(wire.snapshot_key(key), mapping=fields)
                    for key, message in messages:
                        pipe.publish(wire.channel(key), message)
                    await pipe.execute()
                self.updates_published += len(messages)
            except RedisError as exc:
                # Live updates are lossy by design (subscribers resync from snapshots);
                # closed bars still reach MongoDB through the persistence queue.
                log.warning("publishing %d updates failed: %s", len(messages), exc)

    def _flush_closed(self) -> None:
        if not self._closed:
            return
        closed, self._closed[:] = list(self._closed), []
        for bar in closed:
            self.bars_closed += 1
            self._outbox_put(_Pending(bar.key, None, (bar,), False))
            self._persist.put_nowait(bar)  # stored, or (partial) backfilled from history

    async def _persist_loop(self) -> None:
        failures = 0
        while True:
            batch = self._writing = [await self._persist.get()]
            while not self._persist.empty():
                batch.append(self._persist.get_nowait())
            while True:
                try:
                    await self._write(batch)
                    failures = 0
                    self._writing = []
                    break
                except Exception as exc:  # retry the same batch: completed bars are never dropped
                    failures += 1
                    delay = backoff_delay(failures, base=0.5, cap=30.0, jitter=0.0)
                    log.warning("storing %d closed bars failed (%s); retry in %.1fs", len(batch), exc, delay)
                    await asyncio.sleep(delay)

    async def _write(self, batch: list[LiveBar]) -> None:
        """Store the complete bars, and ask history to fill in for the partial ones.
        Both are idempotent, so a retried batch changes nothing twice."""
        by_series: dict[SeriesKey, dict[int, LiveBar]] = {}
        for bar in batch:
            if bar.partial:
                await self._backfill(SeriesKey.of(bar.key, bar.interval), bar)
                continue
            by_series.setdefault(SeriesKey.of(bar.key, bar.interval), {})[bar.start] = bar
        for series, bars in by_series.items():
            columns = BarColumns.from_bars(
                Bar(b.start, b.open, b.high, b.low, b.close, b.volume)
                for b in sorted(bars.values(), key=lambda b: b.start)
            )
            await self._resources.bars.write(series, columns)
            self.bars_persisted += len(columns)

    async def _backfill(self, series: SeriesKey, partial: LiveBar) -> None:
        """Queue a sync of ``series`` from its newest stored bar (a sync may have stored
        it while it was still forming) or ``partial``, whichever is older, through the
        bar in progress now: that covers ``partial`` and whatever closed while no stream
        ran. A series with nothing stored is synced whole if its history is kept (it is
        tracked at that interval, or was synced before: every bar of it may have been
        partial so far); otherwise it is left alone."""
        page = await self._resources.store.read_page(series, start=None, end=None, limit=1, newest_first=True)
        if len(page.bars):
            since = min(page.bars.t[0], partial.start)
            missing = (series.interval.floor(int(self._clock())) - since) // series.interval.nominal_seconds
            # The bars from `since` through the one in progress, and one more in case
            # TradingView's clock has already passed into the next bar.
            n_bars = min(self._settings.sync_default_bars, max(0, missing) + 2)
        elif await _history_kept(series):
            n_bars = self._settings.sync_default_bars
        else:
            return
        enqueued = await self._resources.dispatcher.enqueue(series, n_bars)
        log.info("partial %s bar of %s closed: history sync %s (%d bars)", series.interval.value,
                 partial.key.ticker, enqueued.job_id, n_bars)  # fmt: skip

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(RedisError):
                await self._resources.redis.set(
                    wire.STATUS_KEY,
                    json.dumps(self.status()),
                    # Gone after 5 missed reports: a dead leader's status does not linger.
                    px=int(self._settings.stream_status_every_seconds * 5 * 1000),
                )
            await asyncio.sleep(self._settings.stream_status_every_seconds)

    def status(self) -> wire.StreamReport:
        now = self._clock()
        while self._tick_times and self._tick_times[0] < now - 10:
            self._tick_times.popleft()
        stats = self.client.stats
        return {
            "instance": self._instance,
            "connected": stats.connected,
            "watched": sorted(k.ticker for k in self.client.watched),
            "receiving": sorted(k.ticker for k in self.client.receiving),
            "ticks_per_second": len(self._tick_times) / 10,
            "last_tick_at": self._last_tick_at,
            "reconnects": stats.reconnects,
            "last_error": stats.last_error,
            "late_ticks": self.aggregator.late_ticks,
            "outside_session_ticks": self.aggregator.outside_session_ticks,
            "symbol_errors": dict(stats.symbol_errors),
            "bars_closed": self.bars_closed,
            "bars_persisted": self.bars_persisted,
            "updates_published": self.updates_published,
            "updates_merged": self.updates_merged,
            "updates_dropped": self.updates_dropped,
            "persist_backlog": self._persist.qsize(),
            "updated_at": datetime.fromtimestamp(now, UTC).isoformat(),
            # Wall-clock time of the report (``now`` is the market clock, injected in
            # tests): readers judge from it whether this stream is still alive.
            "reported_at_epoch": time.time(),
        }


async def _history_kept(series: SeriesKey) -> bool:
    key = {"exchange": series.exchange, "symbol": series.symbol}
    if await SyncStatus.find_one({**key, "interval": series.interval.value}) is not None:
        return True
    return await SymbolRecord.find_one({**key, "tracked": True, "tracked_intervals": series.interval.value}) is not None


async def run_stream(resources: Resources, instance: str | None = None, clock: Callable[[], float] = time.time) -> None:
    """Run the stream whenever this process holds the deployment's stream lock; wait
    (and take over when the holder dies) otherwise. Runs until cancelled."""
    lock = LeaderLock(resources.redis, wire.LEADER_KEY, resources.settings.stream_lock_ttl_seconds, owner=instance)

    async def work() -> None:
        await StreamService(resources, lock.owner, clock).run()

    alive = asyncio.create_task(_say_alive(resources, lock.owner), name="stream-alive")
    try:
        await run_as_leader(lock, work)
    finally:
        await cancel_and_wait(alive)


async def _say_alive(resources: Resources, instance: str) -> None:
    """Every stream process, leading or waiting, says it is alive (what `pocketquant
    health stream` checks)."""
    while True:
        with contextlib.suppress(RedisError):
            await resources.redis.set(wire.ALIVE_PREFIX + instance, "1", ex=6)
        await asyncio.sleep(2)
