"""Small helpers shared by tests: waiting on conditions (never bare sleeps), an oracle, recordings,
and the one builder of `PipelineStats`."""

from __future__ import annotations

import asyncio
import math
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.sources.recording import FrameRecorder
from stockup_tui.engine.stats import (
    AnalyzerFigures,
    BusFigures,
    PipelineStats,
    SinkFigures,
    SourceFigures,
    StageState,
)

REPO = Path(__file__).resolve().parent.parent  # the repository: its scripts, docs and configs


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
        "rate": _rate(len(inside), end - ordered[0][1][0], window_ms),
    }


def _rate(count: int, since_first: int, window_ms: int) -> float:
    """Trades per second over the span they cover, plus one average gap, in [1 s, window]."""
    span = since_first * count / (count - 1) if count > 1 else since_first
    return count / (min(window_ms, max(span, 1000)) / 1000)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.snapshots: list[SymbolSnapshot] = []

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        self.snapshots.extend(snapshots)

    def figures(self) -> SinkFigures:
        return SinkFigures(written=len(self.snapshots))

    async def close(self) -> None:
        return None


def make_recording(
    path: Path, seed: int = 11, frames: int = 400
) -> dict[str, list[tuple[int, float, float]]]:
    """Writes a deterministic recording (with duplicates and bad frames) and returns the good,
    de-duplicated trades per symbol, as the oracle sees them. A frame holds 1-12 trades 0-60 ms
    apart: about 0.2 s of event time per frame."""
    rng = random.Random(seed)
    rec = FrameRecorder(path)
    truth: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    t = 1_764_000_000_000
    prices = {"AAPL": 190.0, "MSFT": 420.0, "BTC:USD": 0.5}
    pending_dupes: list[dict[str, Any]] = []
    for i in range(frames):
        data = pending_dupes
        pending_dupes = []
        for _ in range(rng.randint(1, 12)):
            t += rng.randint(0, 60)  # dense: a resent copy comes within the dedup horizon
            sym = rng.choice(list(prices))
            prices[sym] = max(0.01, round(prices[sym] + rng.choice((-0.01, 0.0, 0.01)), 2))
            vol = rng.randint(1, 500) if ":" not in sym else round(rng.random(), 4)
            trade = {"s": sym, "p": prices[sym], "t": t, "v": vol, "c": None}
            data.append(trade)
            truth[sym].append((t, prices[sym], float(vol)))
            if rng.random() < 0.05:
                pending_dupes.append(dict(trade))
        recv = (t + rng.randint(1, 80)) / 1000  # received a little after the last trade
        rec.write(orjson.dumps({"type": "trade", "data": data}).decode(), recv)
        if i % 50 == 7:
            rec.write('{"type":"trade","data":[{"s":"AAPL","p":"bad","t":1,"v":1}]}', recv)
            rec.write("{not json", recv)
            rec.write('{"type":"ping"}', recv)
    rec.close()
    return truth


async def headless_on_feed(port: int, *args: str, **env: str) -> asyncio.subprocess.Process:
    """`stockup-tui --headless` reading a Finnhub-protocol feed at 127.0.0.1:`port`, subscribed
    to AAPL, a status line every 0.3 s; stdout and stderr piped; `env` added to a clean one."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    clean |= {"PYTHONUNBUFFERED": "1", **env}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockup_tui", "--headless", "--source", "finnhub",
        "--url", f"ws://127.0.0.1:{port}", "--symbols", "AAPL", "--status-interval", "0.3",
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean,
    )  # fmt: skip


# -- pipeline figures ------------------------------------------------------------------------------

#: A live feed that is keeping up: connected once, no reconnect, a frame 0.2 s ago.
SOURCE = SourceFigures(
    kind="finnhub",
    endpoint="wss://ws.finnhub.io",
    connected=True,
    connections=1,
    reconnects=0,
    last_gap=None,
    max_gap=0.0,
    frames=100,
    frames_per_s=12.0,
    trades=400,
    trades_per_s=40.0,
    last_frame_age=0.2,
    subscribed=("AAPL", "MSFT"),
    last_error=None,
    finished=False,
)
#: The in-process bus, connected, a few flushes queued.
BUS = BusFigures("memory", True, 100, 12.0, 100, 12.0, 3, 1000, 0, None)
#: An analyzer with every figure known (latencies in seconds).
ANALYZER = AnalyzerFigures(400, 40.0, 2, 10, 0, 1_700_000_000_000, 0.002, 0.008, 0.002, 0.01)


def source_figures(**changes: Any) -> SourceFigures:
    return replace(SOURCE, **changes)


def bus_figures(**changes: Any) -> BusFigures:
    return replace(BUS, **changes)


def analyzer_figures(**changes: Any) -> AnalyzerFigures:
    return replace(ANALYZER, **changes)


def make_stats(**changes: Any) -> PipelineStats:
    """A healthy pipeline's figures; keywords replace whole fields of `PipelineStats` (build a
    part with `source_figures(...)`, `bus_figures(...)`, `analyzer_figures(...)`)."""
    base = PipelineStats(
        at=1_700_000_000.0,
        uptime=60.0,
        source=SOURCE,
        bus=BUS,
        analyzer=ANALYZER,
        drops={},
        stages=(StageState("source", "running"), StageState("analyzer", "running")),
        sinks={"snapshots": SinkFigures(symbols=2, emitted=10)},
    )
    return replace(base, **changes)
