"""Queries of the history slice."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from arq.jobs import Job, JobResult, JobStatus

from pocketquant.domain import InvalidSymbolError, SeriesKey, SymbolKey
from pocketquant.graphql.context import Info
from pocketquant.graphql.errors import BadUserInputError, UpstreamUnavailableError
from pocketquant.graphql.types import IntervalEnum
from pocketquant.history.cache import PageQuery
from pocketquant.history.dispatch import JOB_OWNER_PREFIX, WORKER_ALIVE_PREFIX, parse_sync_job_id
from pocketquant.history.documents import SymbolRecord, SyncStatus
from pocketquant.history.graphql import inputs
from pocketquant.history.graphql.types import (
    BarOrder,
    BarPage,
    SymbolPage,
    SymbolSearchResult,
    SymbolType,
    SyncJob,
    SyncJobResult,
    SyncJobState,
    SyncStatusType,
    sync_statuses,
)
from pocketquant.tradingview.history import ProviderError

MAX_SYMBOL_PAGE = 500
MAX_SEARCH_RESULTS = 50


def _symbol_filter_after(after: str | None) -> dict[str, Any]:
    if after is None:
        return {}
    try:
        last = SymbolKey.from_ticker(after)
    except InvalidSymbolError as exc:
        raise BadUserInputError("malformed cursor: pass `endCursor` from a previous page", field="after") from exc
    return {"$or": [{"exchange": {"$gt": last.exchange}}, {"exchange": last.exchange, "symbol": {"$gt": last.symbol}}]}


@strawberry.type
class HistoryQuery:
    @strawberry.field(
        description="Stored bars of one series, a page at a time, oldest or newest first. An interval not stored is "
        "resampled on read from the longest stored one that fits in it (2h from 1h, 1W from 1d), by the symbol's "
        "sessions: `source` says which."
    )
    async def bars(
        self,
        info: Info,
        exchange: str,
        symbol: str,
        interval: IntervalEnum,
        from_: Annotated[
            datetime | None,
            strawberry.argument(
                name="from", description="Earliest bar time (inclusive). ISO 8601; no offset means UTC."
            ),
        ] = None,
        to: Annotated[datetime | None, strawberry.argument(description="Latest bar time (inclusive).")] = None,
        first: Annotated[int | None, strawberry.argument(description="Page size (default 500, at most 5000).")] = None,
        after: Annotated[str | None, strawberry.argument(description="`endCursor` of the previous page.")] = None,
        order: BarOrder = BarOrder.OLDEST_FIRST,
    ) -> BarPage:
        settings = info.context.settings
        key = inputs.symbol_key(exchange, symbol)
        limit = inputs.bounded(
            settings.page_size_default if first is None else first, 1, settings.page_size_max, "first"
        )
        lo, hi = inputs.time_range(from_, to)
        newest_first = order is BarOrder.NEWEST_FIRST
        if after is not None:
            last_seen = inputs.decode_cursor(after, newest_first)
            if newest_first:
                hi = last_seen - 1 if hi is None else min(hi, last_seen - 1)
            else:
                lo = last_seen + 1 if lo is None else max(lo, last_seen + 1)
        series = SeriesKey.of(key, interval.to_domain())
        served = await info.context.resources.series.page(series, PageQuery(lo, hi, limit, newest_first))
        page = served.page
        last = page.last_time
        end_cursor = inputs.encode_cursor(last, newest_first) if page.has_more and last is not None else None
        return BarPage(
            exchange=key.exchange,
            symbol=key.symbol,
            interval=interval,
            count=page.count,
            has_next_page=page.has_more,
            end_cursor=end_cursor,
            source=IntervalEnum.from_domain(served.source),
            page=page,
        )

    @strawberry.field(description="Symbols that are re-synced on schedule, by exchange and symbol.")
    async def tracked_symbols(
        self,
        first: int = 100,
        after: Annotated[str | None, strawberry.argument(description="`endCursor` of the previous page.")] = None,
    ) -> SymbolPage:
        limit = inputs.bounded(first, 1, MAX_SYMBOL_PAGE, "first")
        query = {"tracked": True} | _symbol_filter_after(after)
        docs = await SymbolRecord.find(query).sort("+exchange", "+symbol").limit(limit + 1).to_list()
        has_more = len(docs) > limit
        docs = docs[:limit]
        return SymbolPage(
            items=[SymbolType.from_document(d) for d in docs],
            has_next_page=has_more,
            end_cursor=f"{docs[-1].exchange}:{docs[-1].symbol}" if has_more else None,
        )

    @strawberry.field(description="A symbol PocketQuant knows (synced or tracked), or null.")
    async def symbol(self, exchange: str, symbol: str) -> SymbolType | None:
        key = inputs.symbol_key(exchange, symbol)
        doc = await SymbolRecord.find_one(SymbolRecord.exchange == key.exchange, SymbolRecord.symbol == key.symbol)
        return SymbolType.from_document(doc) if doc else None

    @strawberry.field(description="Search TradingView's symbols.")
    async def search_symbols(
        self, info: Info, text: str, exchange: str | None = None, limit: int = 20
    ) -> list[SymbolSearchResult]:
        cleaned = text.strip()
        if not 1 <= len(cleaned) <= 64:
            raise BadUserInputError("text must be 1 to 64 characters", field="text")
        limit = inputs.bounded(limit, 1, MAX_SEARCH_RESULTS, "limit")
        ex = inputs.symbol_key(exchange, "X").exchange if exchange else None
        try:
            matches = await info.context.resources.provider.search(cleaned, ex, limit)
        except ProviderError as exc:
            raise UpstreamUnavailableError(str(exc)) from exc
        return [
            SymbolSearchResult(
                exchange=m.exchange, symbol=m.symbol, description=m.description, type=m.type, currency=m.currency
            )
            for m in matches
        ]

    @strawberry.field(description="Sync status of a symbol's series (all intervals, or one).")
    async def sync_status(
        self, info: Info, exchange: str, symbol: str, interval: IntervalEnum | None = None
    ) -> list[SyncStatusType]:
        key = inputs.symbol_key(exchange, symbol)
        query: dict[str, Any] = {"exchange": key.exchange, "symbol": key.symbol}
        if interval is not None:
            query["interval"] = interval.value
        docs = await SyncStatus.find(query).to_list()
        docs.sort(key=lambda d: IntervalEnum(d.interval).to_domain().nominal_seconds)
        return await sync_statuses(info.context.resources.redis, docs)

    @strawberry.field(description="A sync job's state and, once finished, its result. Null if unknown or expired.")
    async def sync_job(self, info: Info, id: strawberry.ID) -> SyncJob | None:
        series = parse_sync_job_id(str(id))
        if series is None:
            raise BadUserInputError("malformed job id: expected sync:EXCHANGE:SYMBOL:INTERVAL", field="id")
        job = Job(str(id), info.context.resources.redis, _queue_name=info.context.settings.queue_name)
        status = await job.status()
        if status is JobStatus.not_found:
            return None
        definition = await (job.result_info() if status is JobStatus.complete else job.info())
        if definition is None:
            return None
        finished = definition if isinstance(definition, JobResult) else None
        worker: str | None = None
        alive: bool | None = None
        if status is JobStatus.in_progress:
            redis = info.context.resources.redis
            owner = await redis.get(JOB_OWNER_PREFIX + str(id))
            if owner is not None:
                worker = owner.decode()
                alive = bool(await redis.exists(WORKER_ALIVE_PREFIX + worker))
        return SyncJob(
            id=id,
            exchange=series.exchange,
            symbol=series.symbol,
            interval=IntervalEnum.from_domain(series.interval),
            state=SyncJobState.from_arq(status),
            attempt=definition.job_try,
            enqueued_at=definition.enqueue_time,
            started_at=finished.start_time if finished else None,
            finished_at=finished.finish_time if finished else None,
            result=SyncJobResult.from_job_result(finished.success, finished.result) if finished else None,
            worker=worker,
            worker_alive=alive,
        )
