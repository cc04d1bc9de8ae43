"""How long the event loop was kept from running: a task asks to wake every ``period``
and records how late it woke. A late wake-up is a stall: some callback ran that long
without yielding, and every request and subscriber of the process waited for it."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from pocketquant.infra.tasks import cancel_and_wait


class LoopWatch:
    def __init__(self, period: float = 0.01, window: float = 60.0) -> None:
        self._period = period
        self._window = window
        self._stalls: deque[tuple[float, float]] = deque()  # (when, seconds late), over 5 ms
        self._task: asyncio.Task[None] | None = None
        self.max_stall = 0.0  # since start

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-watch")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self._period)
            now = time.perf_counter()
            late = now - before - self._period
            if late > 0.005:
                self._stalls.append((now, late))
                self.max_stall = max(self.max_stall, late)
            while self._stalls and self._stalls[0][0] < now - self._window:
                self._stalls.popleft()

    def recent_max(self) -> float:
        """The longest stall in the last ``window`` seconds."""
        cutoff = time.perf_counter() - self._window
        return max((late for when, late in self._stalls if when >= cutoff), default=0.0)
