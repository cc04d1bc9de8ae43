"""Historical bars from TradingView through tvdatafeed (tvdatafeed-enhanced).

tvdatafeed is synchronous, so every fetch runs in a worker thread. It swallows
errors and returns ``None``; the socket wrapper below watches the same frames it
reads, echoes heartbeats (tvdatafeed does not), and records what went wrong so the
caller gets a specific error. Times come back as UTC-aware timestamps (the reason we
chose this fork); a naive index is refused rather than guessed at.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
from tvDatafeed import Interval as TvInterval
from tvDatafeed import TvDatafeed
from websocket import WebSocket, WebSocketException, create_connection

from pocketquant.domain import PROVIDER_MAX_BARS, BarColumns, CheckedBars, Interval, InvalidBarsError, SeriesKey
from pocketquant.tradingview import protocol

log = logging.getLogger(__name__)


_TV_INTERVAL: dict[Interval, TvInterval] = {
    Interval.MINUTE_1: TvInterval.in_1_minute,
    Interval.MINUTE_3: TvInterval.in_3_minute,
    Interval.MINUTE_5: TvInterval.in_5_minute,
    Interval.MINUTE_15: TvInterval.in_15_minute,
    Interval.MINUTE_30: TvInterval.in_30_minute,
    Interval.MINUTE_45: TvInterval.in_45_minute,
    Interval.HOUR_1: TvInterval.in_1_hour,
    Interval.HOUR_2: TvInterval.in_2_hour,
    Interval.HOUR_3: TvInterval.in_3_hour,
    Interval.HOUR_4: TvInterval.in_4_hour,
    Interval.DAY_1: TvInterval.in_daily,
    Interval.WEEK_1: TvInterval.in_weekly,
    Interval.MONTH_1: TvInterval.in_monthly,
}


class ProviderError(Exception):
    """TradingView did not deliver. ``transient`` says whether a retry may help."""

    transient = False
    kind = "provider_error"


class SymbolNotFoundError(ProviderError):
    kind = "symbol_not_found"


class SeriesError(ProviderError):
    kind = "series_error"


class EmptyHistoryError(ProviderError):
    kind = "empty_history"


class InvalidHistoryError(ProviderError):
    kind = "invalid_history"


class ProviderUnavailableError(ProviderError):
    transient = True
    kind = "provider_unavailable"


@dataclass(frozen=True, slots=True)
class SymbolMetadata:
    description: str | None = None
    type: str | None = None
    currency: str | None = None
    timezone: str | None = None
    pricescale: int | None = None
    session: str | None = None  # TradingView's session string: "0930-1600", "24x7", ...
    holidays: str | None = None  # TradingView's session_holidays: "20261126,20261225"

    @classmethod
    def from_resolved(cls, info: dict[str, Any]) -> SymbolMetadata:
        def text(name: str) -> str | None:
            value = info.get(name)
            return str(value) if value not in (None, "") else None

        scale = info.get("pricescale")
        return cls(
            description=text("description"),
            type=text("type"),
            currency=text("currency_code"),
            timezone=text("timezone"),
            pricescale=scale if isinstance(scale, int) else None,
            session=text("session"),
            holidays=text("session_holidays"),
        )


@dataclass(frozen=True, slots=True)
class FetchedHistory:
    series: SeriesKey
    bars: CheckedBars
    metadata: SymbolMetadata | None
    # The time of the newest bar if it was still forming when fetched (TradingView's
    # ``lbs.bar_close_time`` lies past its open): its values are partial, not final.
    forming: int | None = None


@dataclass(frozen=True, slots=True)
class SymbolMatch:
    exchange: str
    symbol: str
    description: str
    type: str | None
    currency: str | None


class _Exchange:
    """What one tvdatafeed request saw on the wire, recorded from its thread."""

    def __init__(self) -> None:
        self.error: ProviderError | None = None
        self.metadata: SymbolMetadata | None = None
        self.completed = False
        self.bar_close_time: int | None = None  # when the newest bar closes, if still forming

    def fail(self, error: ProviderError) -> ProviderError:
        if self.error is None:
            self.error = error
        return self.error


class _InspectingSocket:
    """Wraps tvdatafeed's websocket-client socket: echoes heartbeats and turns
    error frames into exceptions (tvdatafeed then stops reading and returns None)."""

    def __init__(self, ws: WebSocket, seen: _Exchange, ticker: str) -> None:
        self._ws = ws
        self._seen = seen
        self._ticker = ticker

    def send(self, payload: str) -> None:
        self._ws.send(payload)

    def close(self) -> None:
        self._ws.close()

    def recv(self) -> str:
        try:
            message = self._ws.recv()
        except WebSocketException as exc:
            raise self._seen.fail(ProviderUnavailableError(f"TradingView connection failed: {exc}")) from exc
        except OSError as exc:
            raise self._seen.fail(ProviderUnavailableError(f"TradingView connection failed: {exc}")) from exc
        if not isinstance(message, str):
            return ""
        try:
            packets = protocol.parse_message(message)
        except protocol.ProtocolError as exc:
            raise self._seen.fail(ProviderUnavailableError(f"malformed TradingView message: {exc}")) from exc
        for packet in packets:
            if isinstance(packet, protocol.Heartbeat):
                self._ws.send(protocol.frame(packet.payload))
            elif isinstance(packet, protocol.Command):
                self._inspect(packet)
        return message

    def _inspect(self, cmd: protocol.Command) -> None:
        p = cmd.params
        if cmd.method == "symbol_resolved" and len(p) >= 3 and isinstance(p[2], dict):
            self._seen.metadata = SymbolMetadata.from_resolved(p[2])
        elif cmd.method == "symbol_error":
            reason = p[2] if len(p) >= 3 else "unknown"
            raise self._seen.fail(SymbolNotFoundError(f"TradingView does not know {self._ticker} ({reason})"))
        elif cmd.method == "series_error":
            reason = p[2] if len(p) >= 3 else "unknown"
            raise self._seen.fail(SeriesError(f"TradingView refused the series for {self._ticker} ({reason})"))
        elif cmd.method in ("critical_error", "protocol_error"):
            raise self._seen.fail(ProviderUnavailableError(f"TradingView {cmd.method}: {p}"))
        elif cmd.method == "series_completed":
            self._seen.completed = True
        elif cmd.method == "timescale_update" and len(p) >= 2 and isinstance(p[1], dict):
            for update in p[1].values():
                lbs = update.get("lbs") if isinstance(update, dict) else None
                close_time = lbs.get("bar_close_time") if isinstance(lbs, dict) else None
                if isinstance(close_time, int | float) and not isinstance(close_time, bool):
                    self._seen.bar_close_time = int(close_time)


class _Datafeed(TvDatafeed):
    """tvdatafeed pointed at a configurable endpoint, with a recording socket.

    ``TvDatafeed.__init__`` is not called on purpose: it reads a token cache from the
    home directory and can fall back to an interactive, browser-based login. We take a
    token from settings instead.
    """

    def __init__(self, url: str, origin: str, timeout: float, token: str | None, seen: _Exchange, ticker: str):
        self.ws_debug = False
        self.token = token
        self._lock = threading.Lock()
        self._ws_lock = threading.Lock()
        self._url = url
        self._origin = origin
        self._timeout = timeout
        self._seen = seen
        self._ticker = ticker

    @contextmanager
    def _websocket_connection(self) -> Iterator[_InspectingSocket]:  # type: ignore[override]  # duck-typed socket
        try:
            ws = create_connection(self._url, origin=self._origin, timeout=self._timeout)
        except (WebSocketException, OSError) as exc:
            raise self._seen.fail(ProviderUnavailableError(f"cannot reach TradingView at {self._url}: {exc}")) from exc
        try:
            yield _InspectingSocket(ws, self._seen, self._ticker)
        finally:
            ws.close()


_EM_TAG = re.compile(r"</?em>")


class TradingViewHistory:
    """Fetch bars (tvdatafeed, in a thread) and search symbols (HTTP)."""

    def __init__(
        self,
        *,
        websocket_url: str,
        search_url: str,
        http: httpx.AsyncClient,
        auth_token: str | None = None,
        origin: str = "https://www.tradingview.com",
        timeout: float = 30.0,
    ) -> None:
        self._websocket_url = websocket_url
        self._search_url = search_url
        self._http = http
        self._auth_token = auth_token
        self._origin = origin
        self._timeout = timeout

    async def fetch(self, series: SeriesKey, n_bars: int) -> FetchedHistory:
        if not 1 <= n_bars <= PROVIDER_MAX_BARS:
            raise ValueError(f"n_bars must be between 1 and {PROVIDER_MAX_BARS}, got {n_bars}")
        return await asyncio.to_thread(self._fetch_blocking, series, n_bars)

    def _fetch_blocking(self, series: SeriesKey, n_bars: int) -> FetchedHistory:
        seen = _Exchange()
        ticker = series.symbol_key.ticker
        feed = _Datafeed(self._websocket_url, self._origin, self._timeout, self._auth_token, seen, ticker)
        try:
            frame = feed.get_hist(
                symbol=series.symbol, exchange=series.exchange, interval=_TV_INTERVAL[series.interval], n_bars=n_bars
            )
        except Exception as exc:  # tvdatafeed may still raise on odd input; report it, never crash
            raise seen.fail(ProviderError(f"tvdatafeed failed for {ticker}: {exc}")) from exc
        if seen.error is not None:
            raise seen.error
        if frame is None or len(frame) == 0:
            if seen.completed:
                raise EmptyHistoryError(f"TradingView returned no bars for {ticker} at {series.interval.value}")
            raise ProviderUnavailableError(f"TradingView gave no answer for {ticker} at {series.interval.value}")
        bars = _columns(frame, ticker)
        forming = None
        if seen.bar_close_time is not None and len(bars) and seen.bar_close_time > bars.t[-1]:
            forming = bars.t[-1]
        return FetchedHistory(series, bars, seen.metadata, forming)

    async def search(self, text: str, exchange: str | None, limit: int) -> list[SymbolMatch]:
        params = {"text": text, "exchange": exchange or "", "start": "0", "hl": "1", "lang": "en"}
        try:
            response = await self._http.get(
                self._search_url, params=params, headers={"Origin": self._origin}, timeout=self._timeout
            )
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailableError(f"TradingView symbol search failed: {exc}") from exc
        rows = payload.get("symbols", []) if isinstance(payload, dict) else payload
        matches: list[SymbolMatch] = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or not row.get("symbol") or not row.get("exchange"):
                continue
            matches.append(
                SymbolMatch(
                    exchange=_EM_TAG.sub("", str(row["exchange"])),
                    symbol=_EM_TAG.sub("", str(row["symbol"])),
                    description=_EM_TAG.sub("", str(row.get("description", ""))),
                    type=row.get("type") or None,
                    currency=row.get("currency_code") or None,
                )
            )
            if len(matches) >= limit:
                break
        return matches


def _columns(frame: pd.DataFrame, ticker: str) -> CheckedBars:
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise InvalidHistoryError(f"tvdatafeed returned bar times without a time zone for {ticker}")
    utc = index.tz_convert("UTC")
    cols = BarColumns(
        t=[int(ts.timestamp()) for ts in utc],
        o=[float(x) for x in frame["open"]],
        h=[float(x) for x in frame["high"]],
        l=[float(x) for x in frame["low"]],
        c=[float(x) for x in frame["close"]],
        v=[float(x) for x in frame["volume"]],
    )
    try:
        return cols.checked()
    except InvalidBarsError as exc:
        raise InvalidHistoryError(f"TradingView sent unusable bars for {ticker}: {exc}") from exc


__all__ = [
    "EmptyHistoryError",
    "FetchedHistory",
    "InvalidHistoryError",
    "ProviderError",
    "ProviderUnavailableError",
    "SeriesError",
    "SymbolMatch",
    "SymbolMetadata",
    "SymbolNotFoundError",
    "TradingViewHistory",
]
