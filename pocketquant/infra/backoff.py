"""One exponential backoff for every retry loop (TradingView reconnects, sync job
retries, the worker restarting after Redis loss, the stream storing closed bars)."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float = 0.5) -> float:
    """The wait before retry ``attempt`` (1 = the first retry): ``base * 2**(attempt-1)``,
    at most ``cap``, then lowered at random by up to ``jitter`` of itself (0: none; 1:
    full jitter) so that many clients failing together do not retry together."""
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 60))
    return ceiling * (1.0 - jitter * random.random())
