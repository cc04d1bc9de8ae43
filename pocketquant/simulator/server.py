"""A local server that speaks TradingView's websocket protocol and symbol search.

It is what tests and the offline demo point the real clients at (tvdatafeed for
history), so the client code runs end to end. It reproduces the traps listed in
docs/tradingview.md: several frames per message, UTF-16 frame lengths with
non-ASCII payloads, heartbeats that must be echoed (or the connection is closed),
``symbol_error`` for unknown symbols, ``series_completed`` with fewer bars than asked
(the 5,000-bar cap), and faults injected on command.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pocketquant.domain import PROVIDER_MAX_BARS, Interval, InvalidSymbolError, SymbolKey
from pocketquant.simulator.market import Instrument, SimulatedMarket
from pocketquant.tradingview import protocol

log = logging.getLogger(__name__)

MAX_BARS_PER_SERIES = PROVIDER_MAX_BARS  # what a free account gets


class Fault(enum.Enum):
    """Failures the simulator can produce for one symbol."""

    SERIES_ERROR = "series_error"  # symbol resolves, the series fails
    EMPTY = "empty"  # the series completes with no bars
    DROP = "drop"  # the connection is closed without an answer
    CRITICAL = "critical_error"  # a fatal protocol-level error
    CORRUPT = "corrupt"  # one bar has high below low


@dataclass
class SimulatorStats:
    connections: int = 0
    series_served: int = 0
    heartbeat_disconnects: int = 0
    commands: list[str] = field(default_factory=list)


class TradingViewSimulator:
    """Serve the chart protocol on ``ws://host:port/socket.io/websocket`` and symbol
    search on ``http://host:port/symbol_search/v3/``."""

    def __init__(
        self,
        market: SimulatedMarket | None = None,
        *,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 30.0,
        series_delay: float = 0.0,
    ) -> None:
        self.market = market or SimulatedMarket()
        self.clock = clock
        self.faults: dict[SymbolKey, Fault] = {}
        # Faults that apply to the next N series requests of a symbol only.
        self.fault_budget: dict[SymbolKey, tuple[Fault, int]] = {}
        self.stats = SimulatorStats()
        self._host = host
        self._port = port
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self.series_delay = series_delay
        self._server: Server | None = None
        self._connections: set[_Connection] = set()
        self.quotes: dict[SymbolKey, dict[str, Any]] = {}  # the last full quote of each symbol
        self._played: dict[SymbolKey, int] = {}  # each symbol's tape has been sent up to here
        # Name quotes by resolve string (={"symbol":...}) instead of EXCHANGE:SYMBOL, as
        # TradingView does for symbols added that way by other clients.
        self.resolve_names = False
        self._auto_ticks: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """No faults, no delay, no quote state (tests start from here)."""
        self.faults.clear()
        self.fault_budget.clear()
        self.quotes.clear()
        self._played.clear()
        self.resolve_names = False
        self.series_delay = 0.0

    async def __aenter__(self) -> TradingViewSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self._host, self._port, process_request=self._process_http, max_size=2**24
        )

    async def close(self) -> None:
        if self._auto_ticks is not None:
            self._auto_ticks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auto_ticks
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def websocket_url(self) -> str:
        return f"ws://{self._host}:{self.port}/socket.io/websocket"

    @property
    def search_url(self) -> str:
        return f"http://{self._host}:{self.port}/symbol_search/v3/"

    # -- HTTP: symbol search -------------------------------------------------------

    def _process_http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.startswith("/control/"):
            status, text = self.control(url.path.removeprefix("/control/"), query)
            return connection.respond(status, text + "\n")
        if not url.path.startswith("/symbol_search"):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        body = json.dumps(self.search(query.get("text", ""), query.get("exchange", "")), ensure_ascii=False)
        response = connection.respond(HTTPStatus.OK, body)
        headers = Headers(response.headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return Response(response.status_code, response.reason_phrase, headers, body.encode())

    def control(self, action: str, query: dict[str, str]) -> tuple[HTTPStatus, str]:
        """Faults on command, for tests and operators (``GET /control/<action>?...``):

        - ``drop``: cut every client connection now;
        - ``fault?symbol=EX:SYM&fault=<Fault value>[&times=N]``: that symbol's next N
          history requests (all of them without ``times``) fail that way;
        - ``stall?seconds=S``: answer history requests S seconds late;
        - ``clear``: no faults, no stall;
        - ``status``: connections and faults, as JSON.
        """
        try:
            if action == "drop":
                for connection in list(self._connections):
                    connection.ws.transport.abort()
                return HTTPStatus.OK, f"dropped {len(self._connections)} connections"
            if action == "fault":
                key = SymbolKey.from_ticker(query.get("symbol", ""))
                fault = Fault(query.get("fault", ""))
                if "times" in query:
                    self.fail_next(key, fault, int(query["times"]))
                else:
                    self.faults[key] = fault
                return HTTPStatus.OK, f"{key}: {fault.value}"
            if action == "stall":
                self.series_delay = float(query.get("seconds", "0"))
                return HTTPStatus.OK, f"history answers {self.series_delay:g} s late"
            if action == "clear":
                self.faults.clear()
                self.fault_budget.clear()
                self.series_delay = 0.0
                return HTTPStatus.OK, "no faults"
            if action == "status":
                return HTTPStatus.OK, json.dumps(
                    {
                        "connections": len(self._connections),
                        "faults": {k.ticker: f.value for k, f in self.faults.items()},
                        "series_delay": self.series_delay,
                    }
                )
        except (ValueError, InvalidSymbolError) as exc:
            faults = ", ".join(f.value for f in Fault)
            return HTTPStatus.BAD_REQUEST, f"{exc} (faults: {faults}; symbol as EXCHANGE:SYMBOL)"
        return HTTPStatus.NOT_FOUND, "actions: drop, fault, stall, clear, status"

    def search(self, text: str, exchange: str) -> dict[str, Any]:
        """Answer like ``symbol_search/v3``: matches carry ``<em>`` highlight tags."""
        needle = text.strip().upper()
        matches = []
        for inst in self.market.instruments:
            if exchange and inst.exchange != exchange.upper():
                continue
            haystack = f"{inst.symbol} {inst.description}".upper()
            if needle and needle not in haystack:
                continue
            symbol = inst.symbol.replace(needle, f"<em>{needle}</em>", 1) if needle else inst.symbol
            matches.append(
                {
                    "symbol": symbol,
                    "description": inst.description,
                    "type": inst.type,
                    "exchange": inst.exchange,
                    "currency_code": inst.currency_code,
                    "provider_id": "simulator",
                }
            )
        return {"symbols": matches, "symbols_remaining": 0}

    # -- websocket -----------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        connection = _Connection(self, ws)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    # -- quotes --------------------------------------------------------------------

    def quote(self, key: SymbolKey) -> dict[str, Any] | None:
        """The full current quote of a known symbol (created on first use, from the
        tape's last trade at or before now)."""
        if key not in self.quotes:
            instrument = self.market.get(key)
            if instrument is None:
                return None
            now = int(self.clock())
            last = self.market.last_trade(instrument, now)
            tick = 10**-instrument.decimals
            self.quotes[key] = {
                "lp": last.price,
                "lp_time": last.time,
                "ch": 0.0,
                "chp": 0.0,
                "volume": last.total,
                "bid": round(last.price - tick, instrument.decimals),
                "ask": round(last.price + tick, instrument.decimals),
                "current_session": self.market.session_name(instrument, now),
                "description": instrument.description,
                "exchange": instrument.exchange,
                "type": instrument.type,
                "currency_code": instrument.currency_code,
                "pricescale": 10**instrument.decimals,
                "minmov": 1,
                "timezone": instrument.timezone,
            }
            self._played[key] = now
        return self.quotes[key]

    async def push_quotes(self, updates: list[tuple[SymbolKey, dict[str, Any]]]) -> None:
        """Apply partial updates and send each subscribed connection only the changed
        fields, all of them in one websocket message (several frames)."""
        for key, fields in updates:
            state = self.quote(key)
            if state is None:
                raise ValueError(f"unknown simulated symbol {key}")
            state.update(fields)
        for connection in list(self._connections):
            await connection.send_updates(updates)

    async def push_quote(self, key: SymbolKey, **fields: Any) -> None:
        await self.push_quotes([(key, fields)])

    async def drop_connections(self) -> int:
        """Cut every client off abruptly (no closing handshake), as a network failure would."""
        dropped = 0
        for connection in list(self._connections):
            connection.ws.transport.abort()
            dropped += 1
        return dropped

    def quoted(self) -> set[SymbolKey]:
        """The symbols some client's quote session holds now."""
        return {k for c in self._connections for k in c.quoted_keys()}

    async def play(self, until: int | None = None) -> int:
        """Send every quoted symbol's trades on the tape up to ``until`` (default: the
        clock) since the last ones sent (or its snapshot), each as one update, in order.
        Returns how many trades were sent."""
        now = int(self.clock()) if until is None else until
        keys = sorted(self.quoted(), key=lambda k: k.ticker)
        updates: list[tuple[SymbolKey, dict[str, Any]]] = []
        for key in keys:
            instrument = self.market.get(key)
            if instrument is None or self.quote(key) is None:
                continue
            after = self._played.get(key, now)
            for trade in self.market.trades(instrument, after, now):
                fields: dict[str, Any] = {"lp": trade.price, "lp_time": trade.time, "current_session": trade.session}
                if instrument.has_volume:
                    fields["volume"] = trade.total
                updates.append((key, fields))
            self._played[key] = max(after, now)
        if updates:
            await self.push_quotes(updates)
        return len(updates)

    def start_auto_ticks(self, every: float = 0.5) -> None:
        """Send the quoted symbols' trades from the tape as the clock passes them."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                await self.play()

        if self._auto_ticks is None:
            self._auto_ticks = asyncio.create_task(loop())

    def fail_next(self, key: SymbolKey, fault: Fault, times: int) -> None:
        self.fault_budget[key] = (fault, times)

    def take_fault(self, key: SymbolKey) -> Fault | None:
        if key in self.fault_budget:
            fault, left = self.fault_budget[key]
            if left <= 1:
                del self.fault_budget[key]
            else:
                self.fault_budget[key] = (fault, left - 1)
            return fault
        return self.faults.get(key)

    def resolve(self, resolve_string: str) -> Instrument | None:
        try:
            key = SymbolKey.from_ticker(resolve_string)
        except InvalidSymbolError:
            return None
        return self.market.get(key)


class _Connection:
    """One client connection: its chart sessions and heartbeat bookkeeping."""

    def __init__(self, sim: TradingViewSimulator, ws: ServerConnection) -> None:
        self.sim = sim
        self.ws = ws
        self.resolved: dict[tuple[str, str], Instrument] = {}
        self.quote_sessions: dict[str, dict[SymbolKey, str]] = {}  # session -> symbol -> name sent back
        self.last_echo = time.monotonic()
        self.heartbeats_sent = 0

    async def run(self) -> None:
        greeting = {"session_id": "".join(random.choices(string.ascii_letters, k=16)), "release": "simulator"}
        heart = asyncio.create_task(self._heartbeats())
        # Commands run in order on their own task, so a slow answer never stops us
        # from reading heartbeat echoes (as on the real server).
        commands: asyncio.Queue[protocol.Command] = asyncio.Queue()
        processor = asyncio.create_task(self._process(commands))
        try:
            await self.ws.send(protocol.frame(json.dumps(greeting)))
            async for message in self.ws:
                if not isinstance(message, str):
                    continue
                try:
                    packets = protocol.parse_message(message)
                except protocol.ProtocolError as exc:
                    await self.ws.send(protocol.encode("protocol_error", [str(exc)]))
                    await self.ws.close()
                    return
                for packet in packets:
                    if isinstance(packet, protocol.Heartbeat):
                        self.last_echo = time.monotonic()
                    elif isinstance(packet, protocol.Command):
                        self.sim.stats.commands.append(packet.method)
                        commands.put_nowait(packet)
        except ConnectionClosed:
            pass
        finally:
            for task in (heart, processor):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _process(self, commands: asyncio.Queue[protocol.Command]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._command(await commands.get())

    async def _heartbeats(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.sim._heartbeat_interval)
                if time.monotonic() - self.last_echo > self.sim._heartbeat_timeout:
                    self.sim.stats.heartbeat_disconnects += 1
                    await self.ws.close(1000, "heartbeat not echoed")
                    return
                self.heartbeats_sent += 1
                await self.ws.send(protocol.heartbeat(self.heartbeats_sent))

    async def _command(self, cmd: protocol.Command) -> None:
        p = cmd.params
        if cmd.method == "resolve_symbol" and len(p) >= 3:
            await self._resolve(str(p[0]), str(p[1]), str(p[2]))
        elif cmd.method == "create_series" and len(p) >= 6:
            await self._series(str(p[0]), str(p[1]), str(p[3]), str(p[4]), p[5])
        elif cmd.method == "quote_create_session" and p:
            self.quote_sessions.setdefault(str(p[0]), {})
        elif cmd.method == "quote_add_symbols" and len(p) >= 2:
            await self._quote_add(str(p[0]), [s for s in p[1:] if isinstance(s, str)])
        elif cmd.method == "quote_remove_symbols" and len(p) >= 2:
            session = self.quote_sessions.get(str(p[0]), {})
            for name in p[1:]:
                if isinstance(name, str):
                    with contextlib.suppress(InvalidSymbolError):
                        session.pop(SymbolKey.from_ticker(name), None)

    def quoted_keys(self) -> set[SymbolKey]:
        return {key for session in self.quote_sessions.values() for key in session}

    async def send_updates(self, updates: list[tuple[SymbolKey, dict[str, Any]]]) -> None:
        frames = [
            ("qsd", [qs, {"n": names[key], "s": "ok", "v": fields}])
            for qs, names in self.quote_sessions.items()
            for key, fields in updates
            if key in names
        ]
        if frames:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(protocol.encode_many(*frames))

    async def _resolve(self, cs: str, symbol_id: str, resolve_string: str) -> None:
        instrument = self.sim.resolve(resolve_string)
        if instrument is None:
            await self.ws.send(protocol.encode("symbol_error", [cs, symbol_id, "invalid symbol"]))
            return
        self.resolved[(cs, symbol_id)] = instrument
        await self.ws.send(protocol.encode("symbol_resolved", [cs, symbol_id, instrument.resolved()]))

    async def _series(self, cs: str, series_id: str, symbol_id: str, resolution: str, n_bars: object) -> None:
        instrument = self.resolved.get((cs, symbol_id))
        if instrument is None:
            await self.ws.send(protocol.encode("series_error", [cs, series_id, "resolve error"]))
            return
        try:
            interval = Interval.parse(resolution)
        except ValueError:
            await self.ws.send(protocol.encode("series_error", [cs, series_id, f"invalid resolution {resolution}"]))
            return
        fault = self.sim.take_fault(instrument.key)
        if fault is Fault.DROP:
            await self.ws.close(1011, "simulated drop")
            return
        if fault is Fault.CRITICAL:
            await self.ws.send(protocol.encode("critical_error", [cs, "simulated critical error"]))
            await self.ws.close()
            return
        if fault is Fault.SERIES_ERROR:
            await self.ws.send(protocol.encode("series_error", [cs, series_id, "simulated series error"]))
            return
        if self.sim.series_delay:
            await asyncio.sleep(self.sim.series_delay)
        count = n_bars if isinstance(n_bars, int) and n_bars > 0 else 300
        count = min(count, MAX_BARS_PER_SERIES)
        now = int(self.sim.clock())
        bars = [] if fault is Fault.EMPTY else self.sim.market.history(instrument, interval, count, now)
        if fault is Fault.CORRUPT and bars:
            b = bars[-1]
            bars[-1] = type(b)(b.time, b.open, b.low - 1, b.high + 1, b.close, b.volume)
        rows = []
        for i, b in enumerate(bars):
            values: list[float] = [float(b.time), b.open, b.high, b.low, b.close]
            if instrument.has_volume:
                values.append(b.volume)
            rows.append({"i": i, "v": values})
        update = {
            series_id: {
                "node": "sim",
                "s": rows,
                "ns": {"d": "", "indexes": []},
                "t": series_id,
                "lbs": {"bar_close_time": bar[1]} if bars and (bar := instrument.calendar.bar(interval, now)) else {},
            }
        }
        self.sim.stats.series_served += 1
        # Both answers in one websocket message: clients must split frames.
        await self.ws.send(
            protocol.encode_many(
                ("timescale_update", [cs, update, {"index": len(rows) - 1, "zoffset": 0, "changes": []}]),
                ("series_completed", [cs, series_id, "streaming", "s1"]),
            )
        )

    async def _quote_add(self, qs: str, tickers: list[str]) -> None:
        session = self.quote_sessions.setdefault(qs, {})
        frames: list[tuple[str, list[Any]]] = []
        for ticker in tickers:
            instrument = self.sim.resolve(ticker)
            state = self.sim.quote(instrument.key) if instrument else None
            if instrument is None or state is None:
                frames.append(("qsd", [qs, {"n": ticker, "s": "error", "v": {}, "errmsg": "invalid symbol"}]))
                continue
            name = ticker
            if self.sim.resolve_names:
                name = "=" + json.dumps({"symbol": instrument.key.ticker, "adjustment": "splits", "session": "regular"})
            session[instrument.key] = name
            frames.append(("qsd", [qs, {"n": name, "s": "ok", "v": dict(state)}]))
            frames.append(("quote_completed", [qs, name]))
        if frames:
            await self.ws.send(protocol.encode_many(*frames))
