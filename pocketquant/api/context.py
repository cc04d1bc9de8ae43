"""The typed context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry

from pocketquant.realtime.hub import LiveHub
from pocketquant.resources import Resources


@dataclass(slots=True)
class Context:
    """Per HTTP request, or per websocket connection (shared by its operations)."""

    resources: Resources
    hub: LiveHub
    active_subscriptions: int = 0
    connection_params: dict[str, Any] = field(default_factory=dict)


Info = strawberry.Info[Context, None]
