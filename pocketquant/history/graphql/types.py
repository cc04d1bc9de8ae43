"""GraphQL types of the history slice, converted from documents and domain objects."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import strawberry
from arq.jobs import JobStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pocketquant.domain import BarColumns, Interval
from pocketquant.graphql.context import Info
from pocketquant.graphql.scalars import EpochSeconds, EpochSecondsArray, FloatArray, RawJSON
from pocketquant.graphql.types import IntervalEnum, InvalidInput
from pocketquant.history.cache import EncodedPage
from pocketquant.history.dispatch import JOB_OWNER_PREFIX, WORKER_ALIVE_PREFIX
from pocketquant.history.documents import StoredSyncState, SymbolRecord, SyncStatus

log = logging.getLogger(__name__)


@strawberry.enum(description="Order of the bars in a page.")
class BarOrder(enum.Enum):
    OLDEST_FIRST = "oldest_first"
    NEWEST_FIRST = "newest_first"


@strawberry.type(description="One OHLCV bar. `time` is the bar's open time.")
class Bar:
    time: datetime
    timestamp: EpochSeconds = strawberry.field(description="`time` as epoch seconds.")
    open: float
    high: float
    low: float
    close: float
    volume: float


@strawberry.type(name="BarColumns", description="Bars as parallel arrays (the layout of TradingView's UDF `/history`).")
class BarColumnsType:
    t: EpochSecondsArray = strawberry.field(description="Bar open times, epoch seconds (UTC).")
    o: FloatArray
    h: FloatArray
    l: FloatArray  # noqa: E741 - the UDF column name
    c: FloatArray
    v: FloatArray


@strawberry.type(description="A page of bars, oldest or newest first, with a cursor to the next page.")
class BarPage:
    exchange: str
    symbol: str
    interval: IntervalEnum
    count: int = strawberry.field(description="Bars in this page.")
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="Pass as `after` to get the next page; null on the last.")
    source: IntervalEnum = strawberry.field(
        description="The stored interval these bars come from: `interval` itself, or a shorter one resampled."
    )
    page: strawberry.Private[EncodedPage]

    @strawberry.field(description="The bars as objects (about 5x the cost of `columns`).")
    def bars(self) -> list[Bar]:
        # An async iterable: GraphQL completes its items one by one, and every
        # _YIELD_EVERY bars the loop gets a turn. Completed in one go, 5,000 bars held
        # every other request of the process for ~150 ms.
        return _bars(self.page.decode())  # type: ignore[return-value]

    @strawberry.field(description="The bars as columns: cheaper to produce and to transfer.")
    def columns(self) -> BarColumnsType:
        # The columns' JSON text, spliced into the response as it is (see RawJSON).
        c = self.page.columns
        return BarColumnsType(
            t=EpochSecondsArray(RawJSON(c["t"])),
            o=FloatArray(RawJSON(c["o"])),
            h=FloatArray(RawJSON(c["h"])),
            l=FloatArray(RawJSON(c["l"])),
            c=FloatArray(RawJSON(c["c"])),
            v=FloatArray(RawJSON(c["v"])),
        )


_YIELD_EVERY = 100


async def _bars(d: BarColumns) -> AsyncIterator[Bar]:
    for i, (t, o, h, lo, c, v) in enumerate(zip(d.t, d.o, d.h, d.l, d.c, d.v, strict=True)):
        if i and i % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        yield Bar(
            time=datetime.fromtimestamp(t, UTC), timestamp=EpochSeconds(t), open=o, high=h, low=lo, close=c, volume=v
        )


@strawberry.enum(description="Outcome of the latest sync of a series.")
class SyncState(enum.Enum):
    NEVER = "never"
    RUNNING = "running"
    INTERRUPTED = strawberry.enum_value(
        "interrupted",
        description="Its worker died mid-sync; a surviving worker runs the job again within seconds.",
    )
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@strawberry.type(name="SyncStatus", description="Sync history of one (exchange, symbol, interval).")
class SyncStatusType:
    exchange: str
    symbol: str
    interval: IntervalEnum
    state: SyncState
    last_job_id: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_kind: str | None
    last_error_at: datetime | None
    bar_count: int
    first_bar_at: datetime | None
    last_bar_at: datetime | None
    last_bars_fetched: int
    last_bars_inserted: int
    last_bars_updated: int
    last_chunks_written: int
    gap_count: int | None = strawberry.field(
        description="Runs of missing bars in the stored range, by the symbol's trading sessions, as of the last "
        "sync (null: its sessions are unknown). `gaps` lists them."
    )
    missing_bars: int | None = strawberry.field(description="Bars missing in those gaps.")

    @classmethod
    def from_document(cls, doc: SyncStatus, *, interrupted: bool = False) -> SyncStatusType:
        return cls(
            exchange=doc.exchange,
            symbol=doc.symbol,
            interval=IntervalEnum(doc.interval),
            state=SyncState.INTERRUPTED if interrupted else SyncState(doc.state),
            last_job_id=doc.last_job_id,
            last_attempt_at=doc.last_attempt_at,
            last_success_at=doc.last_success_at,
            last_error=doc.last_error,
            last_error_kind=doc.last_error_kind,
            last_error_at=doc.last_error_at,
            bar_count=doc.bar_count,
            first_bar_at=doc.first_bar_at,
            last_bar_at=doc.last_bar_at,
            last_bars_fetched=doc.last_bars_fetched,
            last_bars_inserted=doc.last_bars_inserted,
            last_bars_updated=doc.last_bars_updated,
            last_chunks_written=doc.last_chunks_written,
            gap_count=doc.gap_count,
            missing_bars=doc.missing_bars,
        )


async def sync_statuses(redis: Redis, docs: list[SyncStatus]) -> list[SyncStatusType]:
    """The statuses of ``docs``, a running sync whose worker has died shown as
    INTERRUPTED (its job waits a few seconds to be run again). If Redis cannot say, the
    stored state is shown."""
    running = [d.last_job_id for d in docs if d.state is StoredSyncState.RUNNING and d.last_job_id]
    dead: set[str] = set()
    if running:
        try:
            owners = await redis.mget([JOB_OWNER_PREFIX + job for job in running])
            for job, owner in zip(running, owners, strict=True):
                if owner is not None and not await redis.exists(WORKER_ALIVE_PREFIX + owner.decode()):
                    dead.add(job)
        except RedisError as exc:
            log.warning("cannot tell whether running syncs' workers are alive: %s", exc)
    return [SyncStatusType.from_document(d, interrupted=d.last_job_id in dead) for d in docs]


async def _sync_status_docs(keys: list[tuple[str, str]]) -> list[list[SyncStatus]]:
    """The sync statuses of several symbols, in one query."""
    docs = await SyncStatus.find({"$or": [{"exchange": e, "symbol": s} for e, s in dict.fromkeys(keys)]}).to_list()
    grouped: dict[tuple[str, str], list[SyncStatus]] = {}
    for doc in docs:
        grouped.setdefault((doc.exchange, doc.symbol), []).append(doc)
    return [list(grouped.get(key, [])) for key in keys]


@strawberry.type(name="Symbol", description="A symbol PocketQuant knows: synced at least once, or tracked.")
class SymbolType:
    exchange: str
    symbol: str
    description: str | None
    type: str | None
    currency: str | None
    timezone: str | None = strawberry.field(description="The exchange's time zone (IANA), in which `session` is.")
    session: str | None = strawberry.field(
        description="Trading hours as TradingView gives them: HHMM-HHMM ranges (a close before the open runs "
        "overnight), an optional :days suffix (1 = Sunday), or 24x7."
    )
    tracked: bool
    tracked_intervals: list[IntervalEnum]
    tracked_at: datetime | None

    @strawberry.field(description="`EXCHANGE:SYMBOL`.")
    def ticker(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    @strawberry.field(description="Sync status of each interval of this symbol.")
    async def sync_status(self, info: Info) -> list[SyncStatusType]:
        # Batched: a page of 100 symbols asking for this runs one query, not 100.
        docs: list[SyncStatus] = await info.context.loader("sync_status", _sync_status_docs).load(
            (self.exchange, self.symbol)
        )
        docs.sort(key=lambda d: Interval(d.interval).nominal_seconds)
        return await sync_statuses(info.context.resources.redis, docs)

    @classmethod
    def from_document(cls, doc: SymbolRecord) -> SymbolType:
        return cls(
            exchange=doc.exchange,
            symbol=doc.symbol,
            description=doc.description,
            type=doc.type,
            currency=doc.currency,
            timezone=doc.timezone,
            session=doc.session,
            tracked=doc.tracked,
            tracked_intervals=[IntervalEnum(i) for i in doc.tracked_intervals],
            tracked_at=doc.tracked_at,
        )


@strawberry.type(description="A page of symbols.")
class SymbolPage:
    items: list[SymbolType]
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A match of TradingView's symbol search.")
class SymbolSearchResult:
    exchange: str
    symbol: str
    description: str
    type: str | None
    currency: str | None

    @strawberry.field
    def ticker(self) -> str:
        return f"{self.exchange}:{self.symbol}"


@strawberry.enum(description="Where a sync job is.")
class SyncJobState(enum.Enum):
    DEFERRED = "deferred"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"

    @classmethod
    def from_arq(cls, status: JobStatus) -> SyncJobState:
        return cls(status.value)


@strawberry.type(description="What a finished sync job did.")
class SyncJobResult:
    ok: bool
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 1
    bars_fetched: int = 0
    bars_inserted: int = 0
    bars_updated: int = 0
    bars_unchanged: int = 0
    chunks_written: int = 0
    bar_count: int = 0
    first_bar: datetime | None = None
    last_bar: datetime | None = None

    @classmethod
    def from_job_result(cls, success: bool, result: Any) -> SyncJobResult:
        if not success or not isinstance(result, dict):
            # The job raised: the worker hit an error that retries did not cure.
            return cls(ok=False, error="the sync job failed unexpectedly; see the worker log", error_kind="internal")

        def when(key: str) -> datetime | None:
            value = result.get(key)
            return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None

        return cls(
            ok=bool(result.get("ok")),
            error=result.get("error"),
            error_kind=result.get("error_kind"),
            attempts=int(result.get("attempts", 1)),
            bars_fetched=int(result.get("bars_fetched", 0)),
            bars_inserted=int(result.get("bars_inserted", 0)),
            bars_updated=int(result.get("bars_updated", 0)),
            bars_unchanged=int(result.get("bars_unchanged", 0)),
            chunks_written=int(result.get("chunks_written", 0)),
            bar_count=int(result.get("bar_count", 0)),
            first_bar=when("first_bar"),
            last_bar=when("last_bar"),
        )


@strawberry.type(description="A sync job: one per (exchange, symbol, interval); its state is that of the latest run.")
class SyncJob:
    id: strawberry.ID
    exchange: str
    symbol: str
    interval: IntervalEnum
    state: SyncJobState
    attempt: int | None
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: SyncJobResult | None
    worker: str | None = strawberry.field(description="The worker running it (host:pid:id), while it runs.")
    worker_alive: bool | None = strawberry.field(
        description="While it runs: whether its worker said in the last 6 s that it is alive. False: the worker "
        "is gone, and another one runs the job again within seconds."
    )


@strawberry.type(description="A sync was put on the queue (or one already queued absorbed it).")
class SyncEnqueued:
    job_id: strawberry.ID
    exchange: str
    symbol: str
    interval: IntervalEnum
    deduplicated: bool = strawberry.field(
        description="True when a sync of this series was already queued or running; that job serves this request."
    )


@strawberry.type(description="Several syncs were put on the queue.")
class SyncBatchEnqueued:
    jobs: list[SyncEnqueued]


@strawberry.type(description="The symbol is tracked: its intervals are re-synced on schedule.")
class SymbolTracked:
    symbol: SymbolType
    jobs: list[SyncEnqueued] = strawberry.field(description="The initial syncs, one per interval.")


@strawberry.type(description="The symbol is no longer re-synced on schedule. Its bars stay stored.")
class SymbolUntracked:
    symbol: SymbolType
    was_tracked: bool


SyncSymbolResult = Annotated[SyncEnqueued | InvalidInput, strawberry.union("SyncSymbolResult")]
SyncSymbolsResult = Annotated[SyncBatchEnqueued | InvalidInput, strawberry.union("SyncSymbolsResult")]
TrackSymbolResult = Annotated[SymbolTracked | InvalidInput, strawberry.union("TrackSymbolResult")]
UntrackSymbolResult = Annotated[SymbolUntracked | InvalidInput, strawberry.union("UntrackSymbolResult")]
