"""Live quotes from TradingView's quote session, on ``websockets``.

One connection, one quote session. ``qsd`` messages carry only the fields that
changed; they are merged into the last known state of the symbol, and every update is
handed on with the merged state and the names of the changed fields. Heartbeats are
echoed. A symbol TradingView refuses (``s: "error"``) is reported and the others keep
streaming. When the connection fails it is re-opened with exponential backoff and full
jitter, and every watched symbol is subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import string
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin

from pocketquant.domain import InvalidSymbolError, SymbolKey
from pocketquant.infra.backoff import backoff_delay
from pocketquant.tradingview import protocol

log = logging.getLogger(__name__)

QUOTE_FIELDS = (
    "lp", "lp_time", "ch", "chp", "volume", "bid", "ask", "bid_size", "ask_size", "current_session",
    "description", "exchange", "type", "currency_code", "pricescale", "minmov", "timezone",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class QuoteUpdate:
    key: SymbolKey
    state: dict[str, Any]  # everything known about the symbol, merged
    changed: frozenset[str]
    received_at: float
    # The symbol's first update on this connection: its full state as of now, with the
    # last trade's price and time (possibly minutes or days old). State, not a trade.
    snapshot: bool = False

    @property
    def is_trade(self) -> bool:
        """A new last price, time or session volume after the snapshot: a tick."""
        return (
            not self.snapshot
            and bool(self.changed & {"lp", "lp_time", "volume"})
            and isinstance(self.state.get("lp"), int | float)
        )


@dataclass
class QuoteClientStats:
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    updates: int = 0
    last_message_at: float | None = None
    last_error: str | None = None
    symbol_errors: dict[str, str] = field(default_factory=dict)


class QuoteClient:
    def __init__(
        self,
        url: str,
        on_update: Callable[[QuoteUpdate], Awaitable[None]],
        *,
        origin: str = "https://www.tradingview.com",
        auth_token: str | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_disconnected: Callable[[], None] | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        open_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._on_update = on_update
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._origin = origin
        self._token = auth_token or "unauthorized_user_token"
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._open_timeout = open_timeout
        self._idle_timeout = idle_timeout
        self._clock = wall_clock
        self._watched: set[SymbolKey] = set()
        self._state: dict[SymbolKey, dict[str, Any]] = {}
        self._awaiting_snapshot: set[SymbolKey] = set()  # subscribed on this connection, no update yet
        self._ws: ClientConnection | None = None
        self._session = ""
        self.stats = QuoteClientStats()

    @property
    def watched(self) -> frozenset[SymbolKey]:
        return frozenset(self._watched)

    @property
    def receiving(self) -> frozenset[SymbolKey]:
        """Watched symbols whose first quote on this connection has arrived: from then on
        every trade of theirs arrives too."""
        if self._ws is None:
            return frozenset()
        return frozenset(self._watched - self._awaiting_snapshot)

    async def set_watched(self, keys: Iterable[SymbolKey]) -> None:
        """Make the watched set ``keys``: subscribe new symbols and unsubscribe dropped
        ones on the live connection (or at the next connect)."""
        wanted = set(keys)
        added, removed = sorted(wanted - self._watched), sorted(self._watched - wanted)
        self._watched = wanted
        self._awaiting_snapshot |= set(added)
        for key in removed:
            self._state.pop(key, None)
            self.stats.symbol_errors.pop(key.ticker, None)
        if self._ws is None:
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            if added:
                await self._send("quote_add_symbols", [self._session, *(k.ticker for k in added)])
            if removed:
                await self._send("quote_remove_symbols", [self._session, *(k.ticker for k in removed)])

    async def run(self) -> None:
        """Stream until cancelled, reconnecting after failures."""
        failures = 0
        while True:
            try:
                await self._connect_and_stream()
                failures = 0  # a clean close after streaming: reconnect at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of one connection: back off, reconnect
                failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("quote connection failed (%s); reconnect #%d", self.stats.last_error, failures)
            finally:
                was_connected = self.stats.connected
                self.stats.connected = False
                self._ws = None
                if was_connected and self._on_disconnected is not None:
                    self._on_disconnected()
            delay = backoff_delay(failures, base=self._backoff_base, cap=self._backoff_max, jitter=1.0)
            await asyncio.sleep(delay if failures else 0)
            self.stats.reconnects += 1

    async def _connect_and_stream(self) -> None:
        async with websockets.connect(
            self._url, origin=Origin(self._origin), open_timeout=self._open_timeout, max_size=2**24
        ) as ws:
            self._ws = ws
            self._awaiting_snapshot = set(self._watched)
            self._session = "qs_" + "".join(random.choices(string.ascii_lowercase, k=12))
            await self._send("set_auth_token", [self._token])
            await self._send("quote_create_session", [self._session])
            await self._send("quote_set_fields", [self._session, *QUOTE_FIELDS])
            if self._watched:
                await self._send("quote_add_symbols", [self._session, *sorted(k.ticker for k in self._watched)])
            self.stats.connected = True
            self.stats.connects += 1
            if self._on_connected is not None:
                await self._on_connected()
            while True:
                message = await asyncio.wait_for(ws.recv(), self._idle_timeout)
                if isinstance(message, str):
                    await self._handle(message)
                # A turn for the others (the stream's publisher, its clock) between
                # messages: with messages always buffered, recv() never suspends.
                await asyncio.sleep(0)

    async def _send(self, method: str, params: list[Any]) -> None:
        if self._ws is not None:
            await self._ws.send(protocol.encode(method, params))

    async def _handle(self, message: str) -> None:
        self.stats.last_message_at = self._clock()
        for packet in protocol.parse_message(message):
            if isinstance(packet, protocol.Heartbeat):
                if self._ws is not None:
                    await self._ws.send(protocol.frame(packet.payload))
            elif isinstance(packet, protocol.Command):
                if packet.method == "qsd" and len(packet.params) >= 2 and isinstance(packet.params[1], dict):
                    await self._quote(packet.params[1])
                elif packet.method in ("critical_error", "protocol_error"):
                    raise ConnectionError(f"TradingView {packet.method}: {json.dumps(packet.params)[:200]}")

    async def _quote(self, data: dict[str, Any]) -> None:
        try:
            key = SymbolKey.from_ticker(str(data.get("n", "")))
        except InvalidSymbolError:
            log.warning("quote for an unparseable symbol name %r ignored", data.get("n"))
            return
        if key not in self._watched:
            return  # unsubscribed meanwhile
        if data.get("s") != "ok":
            reason = str(data.get("errmsg") or data.get("v") or "refused")
            if self.stats.symbol_errors.get(key.ticker) != reason:
                log.warning("TradingView refused %s: %s", key, reason)
            self.stats.symbol_errors[key.ticker] = reason
            return
        self.stats.symbol_errors.pop(key.ticker, None)
        values = data.get("v")
        if not isinstance(values, dict) or not values:
            return
        state = self._state.setdefault(key, {})
        state.update(values)
        self.stats.updates += 1
        snapshot = key in self._awaiting_snapshot
        self._awaiting_snapshot.discard(key)
        await self._on_update(QuoteUpdate(key, dict(state), frozenset(values), self._clock(), snapshot))
