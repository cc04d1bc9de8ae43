"""One settings class, built once at start-up and passed down. Nothing connects here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pocketquant.domain import PROVIDER_MAX_BARS, Interval
from pocketquant.domain.aggregator import DEFAULT_LIVE_INTERVALS


class Settings(BaseSettings):
    """Every value can be set from the environment (``MONGODB_URL``, ``REDIS_URL``, ...)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Storage and messaging. Unset URLs mean "embedded" for `pocketquant dev`.
    mongodb_url: str | None = None
    mongodb_database: str = "pocketquant"
    redis_url: str | None = None
    data_dir: Path = Path("./data")
    # How long to wait for MongoDB or Redis before reporting them unavailable.
    store_timeout_seconds: float = Field(default=2.0, gt=0)

    # API
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Exploration aids, off unless enabled (`pocketquant dev` enables them).
    graphiql: bool = False
    introspection: bool = False
    field_suggestions: bool = False
    # Access: reads and subscriptions need a `read` key when true; mutations always
    # need a `write` key (see the README). `pocketquant dev` sets it false.
    auth_required: bool = True
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Abuse limits
    max_query_depth: int = Field(default=10, ge=1)
    max_query_tokens: int = Field(default=2_000, ge=10)
    max_query_aliases: int = Field(default=15, ge=1)
    max_query_cost: int = Field(default=50_000, ge=100)
    max_request_bytes: int = Field(default=65_536, ge=1_024)
    max_input_string_length: int = Field(default=1_000, ge=64)
    max_operation_id_length: int = Field(default=128, ge=8)
    rate_limit_queries_per_second: float = Field(default=20.0, ge=0)
    rate_limit_queries_burst: int = Field(default=100, ge=1)
    rate_limit_mutations_per_second: float = Field(default=2.0, ge=0)
    rate_limit_mutations_burst: int = Field(default=20, ge=1)
    rate_limit_sync_jobs_per_minute: float = Field(default=60.0, ge=0)
    rate_limit_sync_jobs_burst: int = Field(default=300, ge=1)
    max_concurrent_large_reads: int = Field(default=8, ge=1)
    symbol_check_cache_seconds: int = Field(default=86_400, ge=1)
    api_key_cache_seconds: float = Field(default=10.0, ge=0)

    # Bars
    chunk_size: int = Field(default=1_000, ge=10, le=10_000)
    page_size_default: int = Field(default=500, ge=1)
    page_size_max: int = Field(default=5_000, ge=1)
    cache_ttl_seconds: int = Field(default=300, ge=1)

    # TradingView
    tradingview_websocket_url: str = "wss://data.tradingview.com/socket.io/websocket"
    tradingview_search_url: str = "https://symbol-search.tradingview.com/symbol_search/v3/"
    tradingview_origin: str = "https://www.tradingview.com"
    tradingview_auth_token: SecretStr | None = None
    tradingview_timeout_seconds: float = Field(default=30.0, gt=0)

    # Worker and schedules
    queue_name: str = "pocketquant:queue"
    sync_default_bars: int = Field(default=PROVIDER_MAX_BARS, ge=1, le=PROVIDER_MAX_BARS)
    sync_max_tries: int = Field(default=5, ge=1)
    sync_retry_base_seconds: float = Field(default=5.0, ge=0)
    # A 5,000-bar sync takes 1-6 s; TradingView gets TRADINGVIEW_TIMEOUT_SECONDS to answer.
    sync_job_timeout_seconds: int = Field(default=60, ge=1)
    sync_result_ttl_seconds: int = Field(default=86_400, ge=1)
    sync_many_max_symbols: int = Field(default=100, ge=1)
    sync_many_max_series: int = Field(default=100, ge=1)
    intraday_resync_every_hours: int = Field(default=6, ge=1, le=24)
    daily_resync_hour_utc: int = Field(default=22, ge=0, le=23)
    daily_resync_minute: int = Field(default=30, ge=0, le=59)
    default_track_intervals: Annotated[list[Interval], NoDecode] = Field(
        default_factory=lambda: [Interval.DAY_1, Interval.HOUR_1]
    )
    worker_health_check_seconds: int = Field(default=10, ge=1)

    # Stream and live data
    live_intervals: Annotated[list[Interval], NoDecode] = Field(default_factory=lambda: list(DEFAULT_LIVE_INTERVALS))
    bar_close_delay_seconds: float = Field(default=1.0, ge=0, le=60)
    stream_lock_ttl_seconds: float = Field(default=10.0, gt=0)
    stream_status_every_seconds: float = Field(default=1.0, gt=0)
    stream_drain_seconds: float = Field(default=10.0, ge=0)
    watchlist_refresh_seconds: float = Field(default=2.0, gt=0)
    max_watched_symbols: int = Field(default=500, ge=1)
    max_symbols_per_subscription: int = Field(default=50, ge=1)
    max_subscriptions_per_connection: int = Field(default=20, ge=1)
    subscriber_queue_size: int = Field(default=256, ge=8)

    @field_validator("default_track_intervals", "live_intervals", mode="before")
    @classmethod
    def _parse_intervals(cls, value: object) -> object:
        if isinstance(value, str):
            return [Interval.parse(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def intraday_resync_hours(self) -> set[int]:
        return set(range(0, 24, self.intraday_resync_every_hours))

    def required_mongodb_url(self) -> str:
        if not self.mongodb_url:
            raise RuntimeError("MONGODB_URL is not set (only `pocketquant dev` starts an embedded MongoDB)")
        return self.mongodb_url

    def required_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set (only `pocketquant dev` starts an embedded Redis)")
        return self.redis_url
