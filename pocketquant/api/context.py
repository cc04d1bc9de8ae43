"""The typed context every resolver receives."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry

from pocketquant.api.errors import BadUserInputError
from pocketquant.realtime.hub import LiveHub
from pocketquant.resources import Resources

if TYPE_CHECKING:
    from pocketquant.api.fanout import FanoutGroup, FanoutRegistry


@dataclass(slots=True)
class Context:
    """Per HTTP request, or per websocket connection (shared by its operations)."""

    resources: Resources
    hub: LiveHub
    fanout: FanoutRegistry | None = None
    # Set when a live subscription runs once for a group of subscribers (api/fanout.py).
    fanout_group: FanoutGroup | None = None
    active_subscriptions: int = 0
    connection_params: dict[str, Any] = field(default_factory=dict)

    def for_group(self, group: FanoutGroup) -> Context:
        """The context a group's single run uses: its own subscription count (each
        member is counted against its own connection)."""
        return dataclasses.replace(self, fanout_group=group, active_subscriptions=0)

    @contextlib.contextmanager
    def subscription_slot(self) -> Iterator[None]:
        """Hold one of this connection's subscriptions, or refuse with a clear error."""
        limit = self.resources.settings.max_subscriptions_per_connection
        if self.active_subscriptions >= limit:
            raise BadUserInputError(f"at most {limit} subscriptions per connection")
        self.active_subscriptions += 1
        try:
            yield
        finally:
            self.active_subscriptions -= 1


Info = strawberry.Info[Context, None]
