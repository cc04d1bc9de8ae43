"""LiveHub: relays the stream's Redis pub/sub to this API process's subscribers.

One pub/sub connection per process, one channel per symbol that someone here listens
to (reference counted). Each message is decoded once and offered to every listener of
that symbol. A listener owns a :class:`LatestQueue`: a bounded queue that keeps only the
newest update per key, so a slow client costs a fixed amount of memory and never delays
the others. A new listener first gets the symbol's snapshot (latest quote, current bar
per interval), then live updates; sequence numbers drop whatever is older than what it
already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from pocketquant.domain import Interval, SymbolKey
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime import wire

log = logging.getLogger(__name__)


def event_key(event: dict[str, Any]) -> Hashable:
    """The queue key of a live event (a quote or a bar payload of ``wire``): a quote and a
    bar in progress are replaced by newer versions; a closed bar has a key of its own."""
    if "interval" not in event:
        return (event["ticker"], "quote")
    if event["closed"]:
        return (event["ticker"], event["interval"], "closed", event["start"])
    return (event["ticker"], event["interval"], "live")


class LatestQueue:
    """Pending updates, at most ``capacity``, the newest per key, oldest key first.

    Keys of in-progress data (a quote, a bar in progress) are replaced by newer values;
    a closed bar has a key of its own so it is never replaced by the next bar. Past
    ``capacity`` the oldest pending update is dropped and counted. ``event_of`` finds
    the live event inside a queued value (the value itself unless it wraps one).
    """

    def __init__(self, capacity: int, event_of: Callable[[dict[str, Any]], dict[str, Any]] = lambda v: v) -> None:
        self._event_of = event_of
        self._capacity = capacity
        self._items: dict[Hashable, dict[str, Any]] = {}
        self._seen: dict[Hashable, int] = {}
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: Hashable, value: dict[str, Any]) -> None:
        seq = int(value.get("seq", 0))
        if seq <= self._seen.get(key, -1):
            return  # older than what this listener already has
        self._seen[key] = seq
        if len(self._seen) > 4 * self._capacity:
            # Closed bars add a key each; forget the oldest. Sequence checks matter only
            # against the snapshot, at the start of a subscription.
            for old in list(self._seen)[: 2 * self._capacity]:
                del self._seen[old]
        self._items.pop(key, None)  # re-insert: newest last
        self._items[key] = value
        if len(self._items) > self._capacity:
            oldest = next(iter(self._items))
            del self._items[oldest]
            self.dropped += 1
        self._ready.set()

    def put_event(self, event: dict[str, Any], value: dict[str, Any]) -> None:
        """Queue ``value`` under the key of ``event``; a closed bar supersedes the pending
        in-progress version of the same bar (or of an older one)."""
        if event.get("closed"):
            live = (event["ticker"], event["interval"], "live")
            pending = self._items.get(live)
            if pending is not None and self._event_of(pending)["start"] <= event["start"]:
                del self._items[live]
        self.put(event_key(event), value)

    def pop(self) -> dict[str, Any] | None:
        """The oldest pending update, or None when nothing is pending."""
        if not self._items:
            return None
        return self._items.pop(next(iter(self._items)))

    async def get(self) -> dict[str, Any]:
        while (item := self.pop()) is None:
            self._ready.clear()
            await self._ready.wait()
        return item


@dataclass(eq=False)
class Listener:
    """One subscription's interest: quotes and/or bars at some intervals."""

    symbols: frozenset[SymbolKey]
    quotes: bool
    intervals: frozenset[Interval]
    queue: LatestQueue

    def offer(self, payload: dict[str, Any]) -> None:
        quote = payload.get("quote")
        if self.quotes and quote is not None:
            self.queue.put_event(quote, quote)
        if not self.intervals:
            return
        for bar in payload.get("bars", ()):
            if Interval(bar["interval"]) in self.intervals:
                self.queue.put_event(bar, bar)


@dataclass
class _Channel:
    listeners: set[Listener] = field(default_factory=set)


class LiveHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=True)
        self._channels: dict[SymbolKey, _Channel] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def listener_count(self) -> int:
        return len(self._listeners())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def _listeners(self) -> set[Listener]:
        return {listener for c in self._channels.values() for listener in c.listeners}

    @property
    def pending_updates(self) -> int:
        """Updates waiting for subscribers that have not taken them yet (slow ones)."""
        return sum(len(listener.queue) for listener in self._listeners())

    @property
    def dropped_updates(self) -> int:
        """Updates dropped from full queues of current subscribers."""
        return sum(listener.queue.dropped for listener in self._listeners())

    async def close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)
        with contextlib.suppress(RedisError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def listen(
        self, symbols: Iterable[SymbolKey], *, quotes: bool, intervals: Iterable[Interval], capacity: int
    ) -> AsyncIterator[LatestQueue]:
        """Register a listener for the block's duration; its queue starts with the
        snapshots of its symbols."""
        listener = Listener(frozenset(symbols), quotes, frozenset(intervals), LatestQueue(capacity))
        async with self._lock:
            new = [k for k in listener.symbols if k not in self._channels]
            for key in listener.symbols:
                self._channels.setdefault(key, _Channel()).listeners.add(listener)
            try:
                if new:
                    await self._pubsub.subscribe(*(wire.channel(k) for k in new))
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read(), name="live-hub-reader")
            except BaseException:
                self._drop(listener)
                raise
        try:
            await self._load_snapshots(listener)
            yield listener.queue
        finally:
            async with self._lock:
                gone = self._drop(listener)
                if gone:
                    with contextlib.suppress(RedisError):
                        await self._pubsub.unsubscribe(*(wire.channel(k) for k in gone))

    def _drop(self, listener: Listener) -> list[SymbolKey]:
        gone = []
        for key in listener.symbols:
            channel = self._channels.get(key)
            if channel is None:
                continue
            channel.listeners.discard(listener)
            if not channel.listeners:
                del self._channels[key]
                gone.append(key)
        return gone

    async def _load_snapshots(self, listener: Listener) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            keys = sorted(listener.symbols)
            for key in keys:
                pipe.hgetall(wire.snapshot_key(key))
            snapshots = await pipe.execute()
        for fields in snapshots:
            decoded = {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in fields.items()}
            quote = decoded.pop("quote", None)
            listener.offer({"quote": quote, "bars": [v for k, v in decoded.items() if k.startswith("bar:")]})

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                failures = 0
            except RedisError as exc:
                failures += 1
                delay = min(10.0, 0.1 * 2**failures)
                log.warning("live pub/sub failed (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                key = wire.key_of_channel(message["channel"].decode())
                payload = json.loads(message["data"])
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("malformed live message ignored: %s", exc)
                continue
            channel = self._channels.get(key)
            if channel is not None:
                for listener in list(channel.listeners):
                    listener.offer(payload)
