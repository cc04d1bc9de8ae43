"""``GET /export/bars.csv``: one series as CSV, streamed a page at a time.

Query parameters: ``symbol`` (EXCHANGE:SYMBOL), ``interval`` (1m ... 1M; resampled if
not stored, as `bars` does), ``from`` and ``to`` (ISO 8601, no offset means UTC). With
``AUTH_REQUIRED`` it needs a key with the read scope (``Authorization: Bearer``), and it
counts against the client's query rate limit like one GraphQL query.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from pocketquant.api.guard import Guard
from pocketquant.api.http import AccessRefusedError, check_access
from pocketquant.auth.keys import Scope
from pocketquant.domain import Interval, InvalidSymbolError, SeriesKey, SymbolKey
from pocketquant.history.export import CSV_HEADER, csv_rows, pages
from pocketquant.history.graphql.inputs import epoch
from pocketquant.resources import Resources


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return epoch(datetime.fromisoformat(value))
    except ValueError as exc:
        raise _Refused(400, f"`{name}` is not an ISO 8601 time: {value[:40]!r}") from exc


async def _admit(request: Request, guard: Guard, resources: Resources) -> None:
    needed = Scope.READ if guard.settings.auth_required else None
    try:
        principal = await check_access(resources, request.headers.get("authorization"), needed, "exports")
    except AccessRefusedError as exc:
        raise _Refused(exc.status, str(exc), exc.headers) from exc
    address = request.client.host if request.client else "unknown"
    client = f"key:{principal.key_id}" if principal.key_id else f"ip:{address}"
    decision = await guard.limiter.take(guard.limiter.queries, client, 1)
    if not decision.allowed:
        retry = max(1, math.ceil(decision.retry_after)) if math.isfinite(decision.retry_after) else 60
        raise _Refused(429, f"too many requests from this client; retry in {retry} s", {"Retry-After": str(retry)})


def _series(request: Request, longest: int) -> tuple[SeriesKey, int | None, int | None]:
    params = request.query_params
    for name, value in params.items():
        if len(value) > longest:
            raise _Refused(400, f"`{name}` is {len(value)} characters long; at most {longest}")
    ticker = params.get("symbol")
    if not ticker:
        raise _Refused(400, "give `symbol` as EXCHANGE:SYMBOL, e.g. ?symbol=NASDAQ:AAPL&interval=1h")
    try:
        key = SymbolKey.from_ticker(ticker)
        interval = Interval.parse(params.get("interval", "1d"))
    except (InvalidSymbolError, ValueError) as exc:
        raise _Refused(400, str(exc)) from exc
    start, end = _time(params.get("from"), "from"), _time(params.get("to"), "to")
    if start is not None and end is not None and end < start:
        raise _Refused(400, "`to` is before `from`")
    return SeriesKey.of(key, interval), start, end


async def export_csv(request: Request) -> Response:
    guard: Guard = request.state.guard
    resources: Resources = request.state.resources
    try:
        series, start, end = _series(request, guard.settings.max_input_string_length)
        await _admit(request, guard, resources)
    except _Refused as refused:
        return PlainTextResponse(str(refused) + "\n", refused.status, headers=refused.headers)

    async def body() -> AsyncIterator[str]:
        yield CSV_HEADER
        async for columns in pages(resources.series, series, start, end):
            yield csv_rows(columns)

    filename = f"{series.exchange}_{series.symbol}_{series.interval.value}.csv".replace("!", "")
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
