"""Is a symbol known to TradingView? Checked before a symbol is tracked or watched.

A symbol that has been synced successfully is known. Otherwise the answer comes from
TradingView (:func:`resolve_symbols`) and is cached in Redis, shared by every API
process: a known symbol for ``cache_seconds`` (a day by default), an unknown one for an
hour (it may be listed soon). When TradingView cannot be asked, the check fails with
:class:`ProviderUnavailableError`: an unchecked symbol is never let through as known.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pocketquant.domain import SymbolKey
from pocketquant.history.documents import SyncStatus
from pocketquant.tradingview.history import SymbolMetadata

log = logging.getLogger(__name__)

_PREFIX = "pocketquant:symbol-known"
_UNKNOWN_SECONDS = 3_600

Resolver = Callable[[Sequence[SymbolKey]], Awaitable[dict[SymbolKey, SymbolMetadata | None]]]


class SymbolChecker:
    def __init__(self, resolve: Resolver, redis: Redis, cache_seconds: int) -> None:
        self._resolve = resolve
        self._redis = redis
        self._cache_seconds = cache_seconds

    async def metadata(self, keys: Sequence[SymbolKey]) -> dict[SymbolKey, SymbolMetadata | None]:
        """What TradingView says of each symbol now (None: it does not know it)."""
        return await self._resolve(keys) if keys else {}

    async def unknown(self, keys: Sequence[SymbolKey]) -> list[SymbolKey]:
        """The symbols among ``keys`` that TradingView does not know, in order."""
        pending = list(dict.fromkeys(keys))
        if not pending:
            return []
        synced = {
            (s.exchange, s.symbol)
            for s in await SyncStatus.find(
                {
                    "$or": [{"exchange": k.exchange, "symbol": k.symbol} for k in pending],
                    "last_success_at": {"$ne": None},
                }
            ).to_list()
        }
        pending = [k for k in pending if (k.exchange, k.symbol) not in synced]
        known: dict[SymbolKey, bool] = {}
        try:
            cached = await self._redis.mget([f"{_PREFIX}:{k.ticker}" for k in pending]) if pending else []
            known |= {k: v == b"1" for k, v in zip(pending, cached, strict=True) if v is not None}
        except RedisError as exc:
            log.warning("symbol check cache unavailable, asking TradingView: %s", exc)
        ask = [k for k in pending if k not in known]
        if ask:
            answers = await self._resolve(ask)
            for key in ask:
                known[key] = answers.get(key) is not None
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in ask:
                        ttl = self._cache_seconds if known[key] else _UNKNOWN_SECONDS
                        pipe.set(f"{_PREFIX}:{key.ticker}", "1" if known[key] else "0", ex=ttl)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("symbol check not cached: %s", exc)
        return [k for k in keys if known.get(k) is False]
