"""Property tests: the analyzer against an independent, trade-by-trade brute-force reference.

The reference applies the rules of `stockup_tui.engine.analyzer.analyzer` literally, one trade at a
time in the order received, and computes every snapshot with plain loops over the trades applied
so far. Any difference in emitted snapshots, live snapshots or counters is a bug in one of the
fast paths (batch splitting, bulk window updates, segments, dirty rebuilds, compaction).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockup_tui.engine.analyzer import Analyzer, window
from stockup_tui.engine.model import SymbolBatch, SymbolSnapshot, WindowMetrics

# -- reference ------------------------------------------------------------------------------------


def brute_metrics(trades: Sequence[tuple[int, int, float, float]], end: int, width: int) -> dict:
    """Metrics of the window (end - width, end] over (t, seq, p, v) trades, by plain loops."""
    inside = [tr for tr in trades if end - width < tr[0] <= end]
    if not inside:
        return {
            "window_ms": width,
            "count": 0,
            "volume": 0.0,
            "first": None,
            "last": None,
            "min": None,
            "max": None,
            "mean": None,
            "vwap": None,
            "change": None,
            "change_pct": None,
            "rate": 0.0,
        }
    first = min(inside, key=lambda tr: (tr[0], tr[1]))[2]
    last = max(inside, key=lambda tr: (tr[0], tr[1]))[2]
    prices = [tr[2] for tr in inside]
    volume = math.fsum(tr[3] for tr in inside)
    change = last - first
    return {
        "window_ms": width,
        "count": len(inside),
        "volume": volume,
        "first": first,
        "last": last,
        "min": min(prices),
        "max": max(prices),
        "mean": math.fsum(prices) / len(inside),
        "vwap": math.fsum(tr[2] * tr[3] for tr in inside) / volume if volume != 0 else None,
        "change": change,
        "change_pct": change / first * 100 if first != 0 else None,
        "rate": len(inside) / (width / 1000),
    }


@dataclass
class RefSymbol:
    trades: list[tuple[int, int, float, float]] = field(default_factory=list)
    max_t: int | None = None
    next_b: int = 0
    last_emitted: int | None = None
    prev_empty: bool = False
    last: tuple[int, float] | None = None


class Reference:
    """The rules, one trade and one boundary at a time, with brute-force metrics."""

    def __init__(self, windows_ms: Sequence[int], interval: int) -> None:
        self.windows = list(windows_ms)
        self.longest = max(windows_ms)
        self.interval = interval
        self.syms: dict[str, RefSymbol] = {}
        self.seq = 0
        self.late = self.too_old = self.ingested = 0

    def snapshot(self, name: str, end: int) -> dict:
        s = self.syms[name]
        return {
            "symbol": name,
            "ts_ms": end,
            "last_price": s.last[1] if s.last else None,
            "last_trade_ms": s.last[0] if s.last else None,
            "windows": [brute_metrics(s.trades, end, w) for w in self.windows],
        }

    def _emit(self, name: str, stop: int, inclusive: bool, out: list[dict]) -> None:
        s = self.syms[name]
        while s.next_b < stop or (inclusive and s.next_b == stop):
            snap = self.snapshot(name, s.next_b)
            empty = all(w["count"] == 0 for w in snap["windows"])
            if not (empty and s.prev_empty):
                out.append(snap)
                s.last_emitted = s.next_b
                s.prev_empty = empty
            s.next_b += self.interval

    def ingest(self, batch: SymbolBatch) -> list[dict]:
        out: list[dict] = []
        for t, p, v in zip(batch.t, batch.p, batch.v, strict=True):
            self.ingested += 1
            if batch.symbol not in self.syms:
                first_b = math.ceil(t / self.interval) * self.interval
                self.syms[batch.symbol] = RefSymbol(next_b=first_b)
            s = self.syms[batch.symbol]
            if s.max_t is not None and t <= s.max_t - self.longest:
                self.too_old += 1
                continue
            self._emit(batch.symbol, t, False, out)
            if s.last_emitted is not None and t <= s.last_emitted:
                self.late += 1
            self.seq += 1
            s.trades.append((t, self.seq, p, v))
            s.max_t = t if s.max_t is None else max(s.max_t, t)
            if s.last is None or t >= s.last[0]:
                s.last = (t, p)
        return out

    def advance_to(self, ts: int) -> list[dict]:
        out: list[dict] = []
        for name in self.syms:
            self._emit(name, ts, True, out)
        out.sort(key=lambda snap: snap["ts_ms"])
        return out

    def live(self, name: str) -> dict | None:
        s = self.syms.get(name)
        if s is None:
            return None
        end = s.max_t if s.last_emitted is None else max(s.max_t, s.last_emitted)
        return self.snapshot(name, end)


# -- comparison -----------------------------------------------------------------------------------

_EXACT = ("window_ms", "count", "first", "last", "min", "max")
_CLOSE = ("volume", "mean", "vwap", "change", "change_pct", "rate")


def assert_metrics(got: WindowMetrics, want: dict, where: str) -> None:
    for name in _EXACT:
        assert getattr(got, name) == want[name], f"{where}: {name} {got} != {want}"
    for name in _CLOSE:
        g, w = getattr(got, name), want[name]
        if w is None or g is None:
            assert g is w, f"{where}: {name} {g} != {w}"
        else:
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {name} {g} != {w}"


def assert_snapshot(got: SymbolSnapshot | None, want: dict | None, where: str) -> None:
    if want is None:
        assert got is None, where
        return
    assert got is not None, where
    assert (got.symbol, got.ts_ms) == (want["symbol"], want["ts_ms"]), where
    assert got.last_price == want["last_price"], where
    assert got.last_trade_ms == want["last_trade_ms"], where
    assert len(got.windows) == len(want["windows"]), where
    for g, w in zip(got.windows, want["windows"], strict=True):
        assert_metrics(g, w, f"{where} {got.symbol}@{got.ts_ms}")


def assert_all(got: list[SymbolSnapshot], want: list[dict], where: str) -> None:
    assert [(s.symbol, s.ts_ms) for s in got] == [(w["symbol"], w["ts_ms"]) for w in want], where
    for g, w in zip(got, want, strict=True):
        assert_snapshot(g, w, where)


@contextmanager
def small_structures() -> Iterator[None]:
    """Shrink the store's size constants so that tiny examples reach compaction and splits."""
    names = ("_COMPACT_MIN", "_SEG_FLOOR", "_FINE", "_SPLIT_PARTS")
    saved = {name: getattr(window, name) for name in names}
    window._COMPACT_MIN, window._SEG_FLOOR, window._FINE, window._SPLIT_PARTS = 4, 2, 1, 2
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(window, name, value)


# -- random streams -------------------------------------------------------------------------------

SYMBOLS = ("AAA", "BBB", "CCC")
PRICES = (0.0, 1.0, 1.5, 2.0, 99.99, 100.0, 100.01, 1e-4, 1e5)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[int], int, list[tuple]]:
    """Windows, interval and a list of operations over a few symbols, mostly in time order."""
    windows = draw(st.lists(st.sampled_from([50, 100, 250, 400, 1000]), min_size=1, max_size=3))
    interval = draw(st.sampled_from([10, 50, 100, 170]))
    clock = {s: draw(st.integers(0, 2000)) for s in SYMBOLS}
    ops: list[tuple] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["batch"] * 6 + ["advance", "live"]))
        if kind == "batch":
            sym = draw(st.sampled_from(SYMBOLS))
            trades = []
            for _ in range(draw(st.integers(0, 12))):
                step = draw(st.sampled_from([0, 0, 1, 3, 10, 40, 90, 300, -5, -60, -600]))
                clock[sym] = max(0, clock[sym] + step)
                price = draw(
                    st.one_of(
                        st.sampled_from(PRICES),
                        st.floats(0.01, 1000, allow_nan=False, allow_infinity=False),
                    )
                )
                volume = draw(st.sampled_from([0.0, 1.0, 2.0, 100.0, 0.5, 1e6]))
                trades.append((clock[sym], price, volume))
            ops.append(("batch", sym, trades))
        elif kind == "advance":
            base = max(clock.values())
            ops.append(("advance", base + draw(st.integers(-200, 3000))))
        else:
            ops.append(("live", draw(st.sampled_from(SYMBOLS))))
    return windows, interval, ops


def run_stream(windows: list[int], interval: int, ops: list[tuple]) -> None:
    analyzer = Analyzer(windows, emit_interval_ms=interval)
    ref = Reference(windows, interval)
    for k, op in enumerate(ops):
        where = f"op {k} {op[:2]}"
        if op[0] == "batch":
            _, sym, trades = op
            batch = SymbolBatch(
                sym, [t for t, _, _ in trades], [p for _, p, _ in trades], [v for *_, v in trades]
            )
            assert_all(analyzer.ingest(batch), ref.ingest(batch), where)
        elif op[0] == "advance":
            assert_all(analyzer.advance_to(op[1]), ref.advance_to(op[1]), where)
        else:
            assert_snapshot(analyzer.live(op[1]), ref.live(op[1]), where)
        assert (analyzer.late, analyzer.too_old, analyzer.ingested) == (
            ref.late,
            ref.too_old,
            ref.ingested,
        ), where
    for sym in SYMBOLS:
        assert_snapshot(analyzer.live(sym), ref.live(sym), f"final live {sym}")
    assert analyzer.symbols == list(ref.syms)
    maxima = [s.max_t for s in ref.syms.values()]
    assert analyzer.watermark_ms == (max(maxima) if maxima else None)


@settings(max_examples=120, deadline=None)
@given(streams())
def test_matches_reference(stream: tuple[list[int], int, list[tuple]]) -> None:
    run_stream(*stream)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_matches_reference_with_tiny_segments(stream: tuple[list[int], int, list[tuple]]) -> None:
    with small_structures():
        run_stream(*stream)


@pytest.mark.parametrize("seed", range(2))
def test_long_random_stream_with_tiny_segments(seed: int) -> None:
    """Long streams reach states the short hypothesis examples do not (many compactions)."""
    rng = random.Random(seed)
    clock = dict.fromkeys(SYMBOLS, 10_000)
    ops: list[tuple] = []
    for _ in range(1500):
        r = rng.random()
        if r < 0.85:
            sym = rng.choice(SYMBOLS)
            trades = []
            for _ in range(rng.randint(1, 30)):
                clock[sym] += rng.choice([0, 1, 5, 20, 20, 50]) if rng.random() > 0.03 else -300
                price = rng.choice([round(rng.uniform(90, 110), 2), rng.choice(PRICES)])
                trades.append((clock[sym], price, rng.choice([0.0, 1.0, 7.0, 250.0])))
            ops.append(("batch", sym, trades))
        elif r < 0.93:
            ops.append(("live", rng.choice(SYMBOLS)))
        else:
            ops.append(("advance", max(clock.values()) + rng.randint(-500, 2500)))
    with small_structures():
        run_stream([300, 1000, 2500], 100, ops)
    run_stream([300, 1000, 2500], 100, ops)


# -- pandas as a second oracle --------------------------------------------------------------------


def test_live_matches_pandas_rolling() -> None:
    """Window (t - 60 s, t] at each trade equals pandas `rolling('60s')` (closed='right')."""
    rng = np.random.default_rng(7)
    n = 3000
    t = (1_700_000_000_000 + np.cumsum(rng.integers(0, 120, n))).tolist()  # duplicates included
    p = np.round(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n))), 4).tolist()
    v = rng.integers(1, 1000, n).astype(float).tolist()
    analyzer = Analyzer([60_000])
    lives = []
    for ti, pi, vi in zip(t, p, v, strict=True):
        analyzer.ingest(SymbolBatch("X", [ti], [pi], [vi]))
        live = analyzer.live("X")
        assert live is not None
        lives.append(live.windows[0])
    frame = pd.DataFrame({"p": p, "v": v}, index=pd.to_datetime(t, unit="ms"))
    roll = frame.rolling("60s")
    count = roll["p"].count().to_numpy()
    volume = roll["v"].sum().to_numpy()
    lo = roll["p"].min().to_numpy()
    hi = roll["p"].max().to_numpy()
    mean = roll["p"].mean().to_numpy()
    for i, m in enumerate(lives):
        assert m.count == int(count[i])
        assert math.isclose(m.volume, volume[i], rel_tol=1e-9)
        assert m.min == lo[i]
        assert m.max == hi[i]
        assert m.mean is not None
        assert math.isclose(m.mean, mean[i], rel_tol=1e-9)
