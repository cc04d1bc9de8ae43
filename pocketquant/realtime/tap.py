"""EventTap: how a shared live-subscription run learns which source event each of its
results comes from.

A fan-out group (``api/fanout.py``) runs a ``liveQuotes``/``liveBars`` resolver once for
all its members and encodes each result once. The resolver, which owns the hub's queue,
records every event it hands to GraphQL here; the group takes them in the same order
as the results arrive. GraphQL maps each source event of a subscription to exactly one
result, in order (the spec's MapSourceToResponseEvent), so the pairing holds whatever
Strawberry buffers or runs ahead, without either side reading the other's attributes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class TapError(RuntimeError):
    """A result arrived with no event recorded for it: the resolver broke the contract."""


class EventTap:
    def __init__(self) -> None:
        self._events: deque[dict[str, Any]] = deque()
        self.listening = asyncio.Event()  # set by the resolver once its listener is registered

    def emitted(self, event: dict[str, Any]) -> None:
        """The resolver hands ``event`` to GraphQL next."""
        self._events.append(event)

    def result_source(self) -> dict[str, Any]:
        """The event the next result was made from."""
        if not self._events:
            raise TapError("a live result arrived with no source event recorded")
        return self._events.popleft()
