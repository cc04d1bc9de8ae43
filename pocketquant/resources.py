"""Every client the processes use, opened and closed in one lifecycle.

The API's lifespan, the worker's start-up and the CLI all go through
:func:`open_resources`; nothing connects at import time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import httpx
from arq.connections import ArqRedis, RedisSettings, create_pool
from beanie import init_beanie
from pymongo import AsyncMongoClient

from pocketquant.auth.keys import AUTH_DOCUMENTS, ApiKeys
from pocketquant.domain import SymbolKey
from pocketquant.history.bars import BarService, SeriesReader
from pocketquant.history.cache import BarCache
from pocketquant.history.dispatch import SyncDispatcher
from pocketquant.history.documents import DOCUMENT_MODELS
from pocketquant.history.gaps import GapFinder
from pocketquant.history.known import SymbolChecker
from pocketquant.history.service import SyncService
from pocketquant.history.store import BarStore
from pocketquant.realtime.documents import REALTIME_DOCUMENTS
from pocketquant.settings import Settings
from pocketquant.tradingview.history import SymbolMetadata, TradingViewHistory
from pocketquant.tradingview.resolve import resolve_symbols

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    mongo: AsyncMongoClient[dict[str, object]]
    redis: ArqRedis  # one pool for the queue and the cache
    http: httpx.AsyncClient
    store: BarStore
    cache: BarCache
    provider: TradingViewHistory
    sync: SyncService
    dispatcher: SyncDispatcher
    bars: BarService
    series: SeriesReader
    gaps: GapFinder
    keys: ApiKeys
    symbols: SymbolChecker

    def with_store(self, store: BarStore) -> Resources:
        """These resources with bars kept in ``store`` by everything that reads or
        writes them (the bar service, the series reader, the sync): how a test puts a
        failing store under the stream or a sync."""
        bars = BarService(store, self.cache)
        gaps = GapFinder(store, self.gaps.clock)
        return dataclasses.replace(
            self,
            store=store,
            bars=bars,
            series=SeriesReader(store, bars),
            gaps=gaps,
            sync=SyncService(self.provider, store, bars, gaps),
        )


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, clock: Callable[[], float] = time.time) -> AsyncIterator[Resources]:
    """Every client of the process, opened together and closed together. ``clock`` is
    TradingView's now (tests pass the simulator's): where its 5,000-bar reach ends."""
    # Short timeouts: an outage is reported (STORE_UNAVAILABLE, QUEUE_UNAVAILABLE) within
    # seconds instead of holding requests, and retried where that is safe.
    timeout_ms = int(settings.store_timeout_seconds * 1000)
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.required_mongodb_url(),
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
    )
    try:
        await init_beanie(
            database=mongo[settings.mongodb_database],
            document_models=[*DOCUMENT_MODELS, *REALTIME_DOCUMENTS, *AUTH_DOCUMENTS],
        )
        redis_settings = RedisSettings.from_dsn(settings.required_redis_url())
        redis_settings.conn_timeout = max(1, round(settings.store_timeout_seconds))
        redis = await create_pool(redis_settings, default_queue_name=settings.queue_name)
        # arq sets no timeout on commands: a Redis that accepts connections but does not
        # answer (stopped, overloaded) would hold every request.
        redis.connection_pool.connection_kwargs["socket_timeout"] = max(2.0, settings.store_timeout_seconds * 2)
        try:
            async with httpx.AsyncClient(follow_redirects=True) as http:
                token = settings.tradingview_auth_token
                auth = token.get_secret_value() if token else None
                provider = TradingViewHistory(
                    websocket_url=settings.tradingview_websocket_url,
                    search_url=settings.tradingview_search_url,
                    http=http,
                    auth_token=auth,
                    origin=settings.tradingview_origin,
                    timeout=settings.tradingview_timeout_seconds,
                )

                async def resolve(keys: Sequence[SymbolKey]) -> dict[SymbolKey, SymbolMetadata | None]:
                    return await resolve_symbols(
                        keys,
                        url=settings.tradingview_websocket_url,
                        origin=settings.tradingview_origin,
                        auth_token=auth,
                        within=min(10.0, settings.tradingview_timeout_seconds),
                    )

                store = BarStore(settings.chunk_size)
                gaps = GapFinder(store, clock)
                cache = BarCache(redis, settings.cache_ttl_seconds)
                bars = BarService(store, cache)
                yield Resources(
                    settings=settings,
                    mongo=mongo,
                    redis=redis,
                    http=http,
                    store=store,
                    cache=cache,
                    provider=provider,
                    sync=SyncService(provider, store, bars, gaps),
                    dispatcher=SyncDispatcher(redis, settings.queue_name),
                    bars=bars,
                    series=SeriesReader(store, bars),
                    gaps=gaps,
                    keys=ApiKeys(settings.api_key_cache_seconds),
                    symbols=SymbolChecker(resolve, redis, settings.symbol_check_cache_seconds),
                )
        finally:
            await redis.aclose()
    finally:
        await mongo.close()
