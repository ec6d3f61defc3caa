"""Small helpers shared by tests: waiting on conditions (never bare sleeps) and an oracle."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    """Polls `cond` until it holds; fails the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def brute_force(trades: Iterable[tuple[int, float, float]], end: int, window_ms: int) -> dict:
    """Window metrics recomputed from scratch over (t, p, v) with end - window < t <= end,
    in arrival order (ties: first/last by arrival)."""
    inside = [(t, p, v) for t, p, v in trades if end - window_ms < t <= end]
    if not inside:
        return {"count": 0, "volume": 0.0}
    ordered = sorted(enumerate(inside), key=lambda iv: (iv[1][0], iv[0]))
    first, last = ordered[0][1][1], ordered[-1][1][1]
    vol = math.fsum(v for _, _, v in inside)
    return {
        "count": len(inside),
        "volume": vol,
        "first": first,
        "last": last,
        "min": min(p for _, p, _ in inside),
        "max": max(p for _, p, _ in inside),
        "mean": math.fsum(p for _, p, _ in inside) / len(inside),
        "vwap": math.fsum(p * v for _, p, v in inside) / vol if vol else None,
    }


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
