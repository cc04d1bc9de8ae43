"""LiveHub: relays the stream's Redis pub/sub to this API process's subscribers.

One pub/sub connection per process, one channel per symbol that someone here listens
to (reference counted). Each message is decoded once and offered to every listener of
that symbol. A listener owns a :class:`LatestQueue`: a bounded queue that keeps the
newest updates per key (a short backlog, so a burst reaches a listener that keeps up
whole), so a slow client costs a fixed amount of memory and never delays the others.
A new listener first gets the symbol's snapshot (latest quote, current bar
per interval), then live updates; sequence numbers drop whatever is older than what it
already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
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

_BURST_DEPTH = 64  # updates of one key a listener holds before the oldest are replaced


def event_key(event: dict[str, Any]) -> Hashable:
    """The queue key of a live event (a quote or a bar payload of ``wire``): a quote and a
    bar in progress are replaced by newer versions; a closed bar has a key of its own."""
    if "interval" not in event:
        return (event["ticker"], "quote")
    if event["closed"]:
        return (event["ticker"], event["interval"], "closed", event["start"])
    return (event["ticker"], event["interval"], "live")


@dataclass(slots=True, eq=False)
class _Entry:
    key: Hashable
    value: dict[str, Any]
    alive: bool = True


class LatestQueue:
    """Pending updates, at most ``capacity``, the newest ``depth`` per key, in arrival
    order.

    Keys of in-progress data (a quote, a bar in progress) keep their newest ``depth``
    values: with ``depth=1`` a newer value replaces the pending one (and goes last); a
    larger depth lets a consumer that keeps up get every update of a short burst, in
    order, while one that falls behind still costs a bounded amount. A closed bar has a
    key of its own so it is never replaced by the next bar. Past ``capacity`` the oldest
    pending update is dropped and counted. ``event_of`` finds the live event inside a
    queued value (the value itself unless it wraps one).
    """

    def __init__(
        self, capacity: int, event_of: Callable[[dict[str, Any]], dict[str, Any]] = lambda v: v, *, depth: int = 1
    ) -> None:
        self._event_of = event_of
        self._capacity = capacity
        self._depth = depth
        self._entries: deque[_Entry] = deque()
        self._by_key: dict[Hashable, deque[_Entry]] = {}
        self._alive = 0
        self._seen: dict[Hashable, int] = {}
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return self._alive

    def _kill(self, entry: _Entry) -> None:
        entry.alive = False
        self._alive -= 1
        pending = self._by_key[entry.key]
        pending.remove(entry)
        if not pending:
            del self._by_key[entry.key]

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
        pending = self._by_key.get(key)
        while pending and len(pending) >= self._depth:
            self._kill(pending[0])  # superseded by the newer value
            pending = self._by_key.get(key)
        entry = _Entry(key, value)
        self._entries.append(entry)
        self._by_key.setdefault(key, deque()).append(entry)
        self._alive += 1
        if self._alive > self._capacity:
            oldest = self._oldest()
            if oldest is not None:
                self._kill(oldest)
                self.dropped += 1
        self._ready.set()

    def _oldest(self) -> _Entry | None:
        while self._entries and not self._entries[0].alive:
            self._entries.popleft()
        return self._entries[0] if self._entries else None

    def put_event(self, event: dict[str, Any], value: dict[str, Any]) -> None:
        """Queue ``value`` under the key of ``event``; a closed bar supersedes the pending
        in-progress versions of the same bar (or of an older one)."""
        if event.get("closed"):
            live = (event["ticker"], event["interval"], "live")
            for entry in list(self._by_key.get(live, ())):
                if self._event_of(entry.value)["start"] <= event["start"]:
                    self._kill(entry)
        self.put(event_key(event), value)

    def pop(self) -> dict[str, Any] | None:
        """The oldest pending update, or None when nothing is pending."""
        entry = self._oldest()
        if entry is None:
            return None
        self._entries.popleft()
        self._kill(entry)
        return entry.value

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
        # A backlog per key: every update of a burst (the stream publishes in batches)
        # reaches a subscription that keeps up.
        queue = LatestQueue(capacity, depth=_BURST_DEPTH)
        listener = Listener(frozenset(symbols), quotes, frozenset(intervals), queue)
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
