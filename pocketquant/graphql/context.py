"""The typed context every resolver receives."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import strawberry
from starlette.responses import Response
from strawberry.dataloader import DataLoader
from strawberry.types.graphql import OperationType

from pocketquant.auth.keys import ANONYMOUS, Principal, Scope
from pocketquant.graphql.errors import BadUserInputError, RateLimitedError, UserFacingError
from pocketquant.metrics import ApiMetrics
from pocketquant.realtime.hub import LiveHub
from pocketquant.realtime.tap import EventTap
from pocketquant.resources import Resources
from pocketquant.settings import Settings


class RequestGuard(Protocol):
    """What the context offers of the API's guard (``pocketquant/api/guard.py``, which
    implements it): the layers below the API name only this."""

    def required_scope(self, operation: OperationType) -> Scope | None: ...

    async def admit(self, context: Context, operation: OperationType) -> None:
        """Access and the per-client rate limit of one operation (raises a refusal)."""

    async def take_sync_jobs(self, context: Context, count: int) -> None:
        """Charge ``count`` sync jobs to the client's rate limit (raises a refusal)."""


@dataclass(slots=True)
class Context:
    """Per HTTP request, or per websocket connection (shared by its operations)."""

    resources: Resources
    hub: LiveHub
    # The API's settings (those its resources were opened with, unless a test or
    # `pocketquant dev` serves the same resources with other API settings).
    settings: Settings
    guard: RequestGuard | None = None
    metrics: ApiMetrics | None = None
    principal: Principal = ANONYMOUS
    # Who rate limits count against: the key, or the client's address without one.
    client: str = "unknown"
    # The HTTP response being built (None on a websocket): refusals set its status.
    response: Response | None = None
    # Set when a live subscription runs once for a group of subscribers (api/fanout.py).
    live_tap: EventTap | None = None  # set in the context of a fan-out group's shared run
    active_subscriptions: int = 0
    connection_params: dict[str, Any] = field(default_factory=dict)
    # Batching loaders, one per kind, made on first use (see ``loader``).
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)

    def for_shared_run(self, tap: EventTap) -> Context:
        """The context a fan-out group's single run uses: its tap, and its own
        subscription count (each member is counted against its own connection)."""
        return dataclasses.replace(self, live_tap=tap, active_subscriptions=0, response=None)

    def loader(self, name: str, load: Callable[[list[Any]], Awaitable[list[Any]]]) -> DataLoader[Any, Any]:
        """A loader that batches the keys asked for in one tick into one ``load`` call.
        No cache: a websocket's context lives for many operations, which must not see
        each other's results."""
        made = self.loaders.get(name)
        if made is None:
            made = self.loaders[name] = DataLoader(load_fn=load, cache=False)
        return made

    def identify(self, principal: Principal, address: str | None) -> None:
        self.principal = principal
        self.client = f"key:{principal.key_id}" if principal.key_id else f"ip:{address or 'unknown'}"

    def refuse(self, error: UserFacingError) -> None:
        """Give an HTTP response the status (and Retry-After) of a refusal."""
        if self.response is None or error.http_status is None:
            return
        self.response.status_code = error.http_status
        if error.http_status == 401:
            self.response.headers["WWW-Authenticate"] = 'Bearer realm="pocketquant"'
        if isinstance(error, RateLimitedError) and math.isfinite(error.retry_after):
            self.response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))

    @contextlib.contextmanager
    def subscription_slot(self) -> Iterator[None]:
        """Hold one of this connection's subscriptions, or refuse with a clear error."""
        limit = self.settings.max_subscriptions_per_connection
        if self.active_subscriptions >= limit:
            raise BadUserInputError(f"at most {limit} subscriptions per connection")
        self.active_subscriptions += 1
        try:
            yield
        finally:
            self.active_subscriptions -= 1


Info = strawberry.Info[Context, None]
