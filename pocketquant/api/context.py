"""The typed context every resolver receives."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry

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
        return dataclasses.replace(self, fanout_group=group, active_subscriptions=0)


Info = strawberry.Info[Context, None]
