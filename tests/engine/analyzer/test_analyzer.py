"""Unit tests of the analyzer rules (stated in `stockup_tui.engine.analyzer.analyzer`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.analyzer.window import SymbolWindows
from stockup_tui.engine.model import SymbolBatch, SymbolSnapshot, WindowMetrics


def batch(symbol: str, trades: Sequence[tuple[int, float, float]]) -> SymbolBatch:
    """A SymbolBatch from (t, p, v) rows."""
    return SymbolBatch(
        symbol, [t for t, _, _ in trades], [p for _, p, _ in trades], [v for *_, v in trades]
    )


def live(analyzer: Analyzer, symbol: str = "A") -> SymbolSnapshot:
    snap = analyzer.live(symbol)
    assert snap is not None
    return snap


def ends(snaps: Sequence[SymbolSnapshot]) -> list[int]:
    return [s.ts_ms for s in snaps]


# -- window content and metrics -------------------------------------------------------------------


def test_metrics_of_one_window() -> None:
    a = Analyzer([10_000])
    a.trades(batch("A", [(1_000, 10.0, 1.0), (2_000, 12.0, 3.0), (3_000, 9.0, 0.0)]))
    w = live(a).windows[0]
    assert w == WindowMetrics(
        window_ms=10_000,
        count=3,
        volume=4.0,
        first=10.0,
        last=9.0,
        min=9.0,
        max=12.0,
        mean=31.0 / 3,
        vwap=(10.0 + 36.0) / 4.0,
        change=-1.0,
        change_pct=-10.0,
        rate=1.0,  # three trades a second apart: one a second (not 3 per 10 s)
    )
    assert live(a).ts_ms == 3_000
    assert (live(a).last_price, live(a).last_trade_ms) == (9.0, 3_000)


def test_window_is_open_at_start_and_closed_at_end() -> None:
    a = Analyzer([1_000], emit_interval_ms=1_000)
    a.trades(batch("A", [(1_000, 1.0, 1.0), (1_500, 2.0, 1.0), (2_000, 3.0, 1.0)]))
    snaps = a.trades(batch("A", [(2_001, 4.0, 1.0)]))
    # boundary 2000 covers (1000, 2000]: the trade at exactly 1000 is out, the one at 2000 in
    assert ends(snaps) == [2_000]
    w = snaps[0].windows[0]
    assert (w.count, w.first, w.last) == (2, 2.0, 3.0)


def test_ties_first_received_is_first_last_received_is_last() -> None:
    a = Analyzer([10_000])
    a.trades(batch("A", [(1_000, 5.0, 1.0), (1_000, 6.0, 1.0), (2_000, 7.0, 1.0)]))
    a.trades(batch("A", [(2_000, 8.0, 1.0)]))
    w = live(a).windows[0]
    assert (w.first, w.last) == (5.0, 8.0)
    assert live(a).last_price == 8.0
    # an out-of-order trade equal to an existing time goes after it: still not first
    a.trades(batch("A", [(1_000, 4.0, 1.0)]))
    w = live(a).windows[0]
    assert (w.first, w.last, w.min) == (5.0, 8.0, 4.0)


def test_zero_volume_gives_no_vwap() -> None:
    a = Analyzer([10_000])
    a.trades(batch("A", [(1_000, 5.0, 0.0), (1_500, 6.0, 0.0)]))
    w = live(a).windows[0]
    assert (w.count, w.volume, w.vwap, w.mean) == (2, 0.0, None, 5.5)


def test_volume_leaving_the_window_gives_exact_zero() -> None:
    a = Analyzer([1_000])
    a.trades(batch("A", [(1_000, 5.0, 0.1), (1_001, 5.0, 0.2), (1_700, 5.0, 0.0)]))
    a.trades(batch("A", [(2_500, 5.0, 0.0)]))
    w = live(a).windows[0]
    assert (w.count, w.volume, w.vwap) == (2, 0.0, None)


def test_zero_first_price_gives_no_change_pct() -> None:
    a = Analyzer([10_000])
    a.trades(batch("A", [(1_000, 0.0, 1.0), (1_500, 2.0, 1.0)]))
    w = live(a).windows[0]
    assert (w.change, w.change_pct) == (2.0, None)


def test_empty_window_keeps_last_trade() -> None:
    a = Analyzer([1_000, 5_000])
    a.trades(batch("A", [(1_000, 5.0, 2.0)]))
    snaps = a.watermark(4_000)
    assert ends(snaps) == [1_000, 2_000, 3_000, 4_000]
    last = snaps[-1]
    assert last.windows[0] == WindowMetrics(
        1_000, 0, 0.0, None, None, None, None, None, None, None, None, 0.0
    )
    assert last.windows[1].count == 1
    assert (last.last_price, last.last_trade_ms) == (5.0, 1_000)


def test_multiple_windows_in_given_order() -> None:
    a = Analyzer([5_000, 1_000, 3_000])
    a.trades(batch("A", [(t, float(t), 1.0) for t in range(1_000, 6_001, 500)]))
    windows = live(a).windows
    assert [w.window_ms for w in windows] == [5_000, 1_000, 3_000]
    assert [w.count for w in windows] == [10, 2, 6]
    assert [w.first for w in windows] == [1_500.0, 5_500.0, 3_500.0]
    assert [w.rate for w in windows] == [2.0, 2.0, 2.0]  # the same pace in every window


def test_the_rate_is_the_pace_from_the_first_trade_then_decays() -> None:
    a = Analyzer([60_000, 300_000])
    a.trades(batch("A", [(t, 1.0, 1.0) for t in range(100, 10_001, 100)]))  # 10/s for 10 s
    assert [w.rate for w in live(a).windows] == [10.0, 10.0]  # not 100/60 and 100/300
    snap = a.watermark(40_000)[-1]  # quiet for 30 s: over the 40 s now covered
    assert snap.ts_ms == 40_000
    span = 39.9 * 100 / 99  # first trade to the end, plus one average gap (0.403 s)
    assert [round(w.rate, 6) for w in snap.windows] == [round(100 / span, 6)] * 2
    lone = Analyzer([60_000])
    lone.trades(batch("B", [(5_000, 1.0, 1.0)]))
    assert live(lone, "B").windows[0].rate == 1.0  # one trade, at the end: over 1 s


# -- emission -------------------------------------------------------------------------------------


def test_first_boundary_is_the_first_covering_the_first_trade() -> None:
    a = Analyzer([60_000])
    a.trades(batch("A", [(1_000, 1.0, 1.0)]))
    a.trades(batch("B", [(1_001, 1.0, 1.0)]))
    assert ends(a.trades(batch("A", [(1_001, 1.0, 1.0)]))) == [1_000]
    assert ends(a.trades(batch("B", [(2_000, 1.0, 1.0)]))) == []  # t == B does not emit B
    assert ends(a.trades(batch("B", [(2_001, 1.0, 1.0)]))) == [2_000]


def test_batch_is_split_at_boundaries() -> None:
    a = Analyzer([60_000])
    a.trades(batch("A", [(500, 1.0, 1.0)]))
    snaps = a.trades(
        batch("A", [(900, 2.0, 1.0), (1_000, 3.0, 1.0), (1_200, 4.0, 1.0), (3_500, 5.0, 1.0)])
    )
    assert ends(snaps) == [1_000, 2_000, 3_000]
    assert [s.windows[0].count for s in snaps] == [3, 4, 4]
    assert [s.windows[0].last for s in snaps] == [3.0, 4.0, 4.0]
    assert [s.last_price for s in snaps] == [3.0, 4.0, 4.0]
    assert [s.last_trade_ms for s in snaps] == [1_000, 1_200, 1_200]
    assert live(a).windows[0].count == 5


def test_unsorted_batch_emits_when_a_later_trade_arrives() -> None:
    a = Analyzer([60_000])
    a.trades(batch("A", [(500, 1.0, 1.0)]))
    snaps = a.trades(batch("A", [(1_500, 2.0, 1.0), (800, 3.0, 1.0), (2_500, 4.0, 1.0)]))
    assert ends(snaps) == [1_000, 2_000]
    assert [s.windows[0].count for s in snaps] == [1, 3]  # 800 came after 1000 was emitted
    assert a.late == 1


def test_advance_to_emits_all_symbols_in_boundary_order() -> None:
    a = Analyzer([60_000])
    a.trades(batch("A", [(500, 1.0, 1.0)]))
    a.trades(batch("B", [(1_500, 1.0, 1.0)]))
    snaps = a.watermark(3_000)
    assert [(s.symbol, s.ts_ms) for s in snaps] == [
        ("A", 1_000),
        ("A", 2_000),
        ("B", 2_000),
        ("A", 3_000),
        ("B", 3_000),
    ]
    assert a.watermark(3_999) == []
    assert ends(a.trades(batch("A", [(4_500, 1.0, 1.0)]))) == [4_000]


def test_quiet_symbol_gives_one_empty_snapshot() -> None:
    a = Analyzer([2_000])
    a.trades(batch("A", [(500, 1.0, 1.0)]))
    snaps = a.watermark(10_000)
    assert ends(snaps) == [1_000, 2_000, 3_000]
    assert [s.windows[0].count for s in snaps] == [1, 1, 0]
    assert a.watermark(20_000) == []
    # trades resume: the boundaries after them are emitted again, starting with the first one
    snaps = a.trades(batch("A", [(20_500, 2.0, 1.0), (22_100, 3.0, 1.0)]))
    assert ends(snaps) == [21_000, 22_000]
    assert [s.windows[0].count for s in snaps] == [1, 1]
    snaps = a.trades(batch("A", [(30_000, 4.0, 1.0)]))
    assert ends(snaps) == [23_000, 24_000, 25_000]  # 25000 empty, then silence until 29000
    assert [s.windows[0].count for s in snaps] == [1, 1, 0]


def test_long_idle_gap_is_cheap() -> None:
    a = Analyzer([60_000, 300_000])
    a.trades(batch("A", [(500, 1.0, 1.0)]))
    snaps = a.watermark(10**12)
    snaps += a.trades(batch("A", [(10**12 + 5, 2.0, 1.0)]))
    # 300 boundaries until the 5m window empties, one empty snapshot, then the new trade's:
    # not the 10**9 boundaries of the gap.
    assert len(snaps) == 301
    assert snaps[-1].windows[1].count == 0


def test_emission_with_other_interval() -> None:
    a = Analyzer([1_000], emit_interval_ms=250)
    a.trades(batch("A", [(100, 1.0, 1.0)]))
    snaps = a.trades(batch("A", [(600, 2.0, 1.0)]))
    assert ends(snaps) == [250, 500]


# -- live -----------------------------------------------------------------------------------------


def test_live_end_is_latest_trade_or_last_boundary() -> None:
    a = Analyzer([1_000])
    assert a.live("A") is None
    a.trades(batch("A", [(1_200, 1.0, 1.0), (1_700, 2.0, 1.0)]))
    assert live(a).ts_ms == 1_700
    a.watermark(2_500)
    snap = live(a)
    assert snap.ts_ms == 2_000
    assert snap.windows[0].count == 2
    a.watermark(2_900)  # the last boundary emitted is still 2000
    assert live(a).ts_ms == 2_000
    a.watermark(3_000)
    assert (live(a).ts_ms, live(a).windows[0].count) == (3_000, 0)


def test_live_all_and_symbols() -> None:
    a = Analyzer([1_000])
    assert a.trades(SymbolBatch("Z")) == []
    assert a.symbols == [] and a.watermark_ms is None
    a.trades(batch("B", [(5_000, 1.0, 1.0)]))
    a.trades(batch("A", [(4_000, 1.0, 1.0)]))
    assert a.symbols == ["B", "A"]
    assert [s.symbol for s in a.live_all()] == ["B", "A"]
    assert a.watermark_ms is None  # trades move no clock: only watermark records do
    a.watermark(4_500)
    assert a.watermark_ms == 4_500
    assert a.ingested == 2


# -- late, too old, out of order ------------------------------------------------------------------


def test_late_trade_is_applied_and_counted() -> None:
    a = Analyzer([10_000])
    a.trades(batch("A", [(1_500, 1.0, 1.0)]))
    first = a.trades(batch("A", [(2_500, 2.0, 1.0)]))
    assert ends(first) == [2_000]
    a.trades(batch("A", [(1_800, 3.0, 5.0)]))  # boundary 2000 already emitted
    assert a.late == 1
    assert first[0].windows[0].count == 1  # the emitted snapshot is not revised
    w = live(a).windows[0]
    assert (w.count, w.volume, w.max, w.last) == (3, 7.0, 3.0, 2.0)
    snaps = a.trades(batch("A", [(3_100, 4.0, 1.0)]))
    assert snaps[0].windows[0].count == 3


def test_in_order_trade_before_an_idle_boundary_is_late() -> None:
    a = Analyzer([10_000])
    a.trades(batch("A", [(1_500, 1.0, 1.0)]))
    a.watermark(5_000)
    a.trades(batch("A", [(4_000, 2.0, 1.0), (4_500, 3.0, 1.0), (5_500, 4.0, 1.0)]))
    assert a.late == 2
    assert live(a).windows[0].count == 4


def test_too_old_trade_is_dropped() -> None:
    a = Analyzer([1_000, 3_000])
    a.trades(batch("A", [(10_000, 1.0, 1.0)]))
    a.trades(batch("A", [(7_000, 2.0, 1.0), (7_001, 3.0, 1.0)]))  # 7000 = 10000 - 3000
    assert (a.too_old, a.late, a.ingested) == (1, 0, 3)
    windows = live(a).windows
    assert [w.count for w in windows] == [1, 2]
    assert windows[1].first == 3.0


def test_out_of_order_inserts_are_exact() -> None:
    a = Analyzer([1_000])
    a.trades(batch("A", [(1_000, 5.0, 1.0), (1_400, 6.0, 1.0), (1_800, 7.0, 1.0)]))
    assert live(a).windows[0].count == 3
    a.trades(batch("A", [(1_200, 1.0, 2.0), (1_900, 9.0, 1.0), (1_100, 8.0, 1.0)]))
    w = live(a).windows[0]
    assert (w.count, w.first, w.last, w.min, w.max) == (6, 5.0, 9.0, 1.0, 9.0)
    assert w.volume == 7.0
    assert (live(a).last_price, live(a).last_trade_ms) == (9.0, 1_900)
    a.trades(batch("A", [(2_300, 3.0, 1.0)]))
    w = live(a).windows[0]
    assert (w.count, w.first, w.min) == (4, 6.0, 3.0)


def test_a_dropped_partition_forgets_its_symbols() -> None:
    a = Analyzer([60_000])
    a.trades(batch("A", [(500, 1.0, 1.0)]), partition=0)
    a.trades(batch("B", [(500, 1.0, 1.0)]), partition=1)
    a.drop_partition(0)
    a.drop_partition(7)
    assert a.symbols == ["B"] and a.partitions == [1]
    assert a.live("A") is None
    assert ends(a.watermark(1_000, partition=1)) == [1_000]
    # a later record of the partition starts it afresh
    assert a.trades(batch("A", [(5_500, 2.0, 1.0)]), partition=0) == []
    assert live(a).windows[0].count == 1


def test_symbols_past_the_bound_are_counted_drops_until_one_goes_quiet() -> None:
    a = Analyzer([2_000], max_symbols=2)
    a.trades(batch("A", [(500, 1.0, 1.0)]), partition=0)
    a.trades(batch("B", [(600, 1.0, 1.0)]), partition=0)
    a.trades(batch("C", [(700, 1.0, 1.0), (800, 2.0, 1.0)]), partition=0)  # fast path
    a.trades(batch("D", [(900, 1.0, 1.0), (850, 2.0, 1.0)]), partition=0)  # slow path
    a.trades(batch("C", [(700, 1.0, 1.0)]), partition=1)  # the bound is per partition
    assert a.too_many_symbols == 4 and a.ingested == 7
    assert a.symbols == ["A", "B", "C"]
    a.trades(batch("B", [(2_500, 1.0, 1.0)]), partition=0)
    a.watermark(3_000, partition=0)  # A goes quiet (its window is empty at 3000), B stays
    assert a.symbols == ["B", "C"]
    a.trades(batch("D", [(3_500, 1.0, 1.0)]), partition=0)  # A's place is free again
    assert a.symbols == ["B", "D", "C"] and a.too_many_symbols == 4


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        Analyzer([])
    with pytest.raises(ValueError):
        Analyzer([0])
    with pytest.raises(ValueError):
        Analyzer([1_000], emit_interval_ms=0)
    with pytest.raises(ValueError, match="longer than the longest window"):
        Analyzer([1_000], emit_interval_ms=2_000)
    with pytest.raises(ValueError, match="max_symbols"):
        Analyzer([1_000], max_symbols=0)
    store = SymbolWindows([1_000])
    store.query(5)
    with pytest.raises(ValueError):
        store.query(4)


def test_lists_are_compacted() -> None:
    a = Analyzer([1_000])
    for k in range(200):
        a.trades(batch("A", [(k * 100 + i, float(i % 7), 1.0) for i in range(100)]))
        a.live("A")
    store = a.partition(0).syms["A"].store
    assert len(store) < 12_000
    w = live(a).windows[0]
    assert (w.count, w.min, w.max, w.volume) == (1_000, 0.0, 6.0, 1_000.0)


# -- numeric drift --------------------------------------------------------------------------------


def drift_check(n: int, batch_size: int, seed: int) -> None:
    """Stream n trades (one per ms) whose price and volume magnitudes swing over many decades,
    so the running sums see huge cancellations; sampled snapshots must still match `fsum`.
    """
    rng = np.random.default_rng(seed)
    block = 5_000  # one magnitude regime per 5 s: prices 1e-4 .. 1e5, volumes 1e-3 .. 2e4
    blocks = -(-n // block)
    p_scale = np.repeat(10.0 ** rng.integers(-4, 5, blocks), block)[:n]
    v_scale = np.repeat(10.0 ** rng.integers(-3, 5, blocks), block)[:n]
    t_start = 1_700_000_000_000  # trade i is at t_start + i
    a = Analyzer([60_000, 7_000])
    keep = 100_000  # the recent trades kept for recomputation (> the longest window)
    origin = 0  # index of p_all[0]
    p_all: list[float] = []
    v_all: list[float] = []
    checked = 0

    def check(snap: SymbolSnapshot) -> None:
        for w in snap.windows:
            lo = snap.ts_ms - w.window_ms - t_start + 1 - origin
            hi = snap.ts_ms - t_start + 1 - origin
            assert lo >= 0
            ps, vs = p_all[lo:hi], v_all[lo:hi]
            assert w.count == len(ps)
            volume = math.fsum(vs)
            assert math.isclose(w.volume, volume, rel_tol=1e-9, abs_tol=0.0)
            assert w.mean is not None and w.vwap is not None
            assert math.isclose(w.mean, math.fsum(ps) / len(ps), rel_tol=1e-9, abs_tol=0.0)
            vwap = math.fsum(map(float.__mul__, ps, vs)) / volume
            assert math.isclose(w.vwap, vwap, rel_tol=1e-9, abs_tol=0.0)
            assert (w.min, w.max) == (min(ps), max(ps))
            assert (w.first, w.last) == (ps[0], ps[-1])

    chunk = 500_000
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        p = (p_scale[c0:c1] * rng.uniform(1.0, 10.0, c1 - c0)).tolist()
        v = (v_scale[c0:c1] * rng.uniform(0.5, 2.0, c1 - c0)).tolist()
        t = list(range(t_start + c0, t_start + c1))
        p_all.extend(p)
        v_all.extend(v)
        for k, i in enumerate(range(0, c1 - c0, batch_size)):
            j = i + batch_size
            snaps = a.trades(SymbolBatch("X", t[i:j], p[i:j], v[i:j]))
            snap = a.live("X")
            assert snap is not None
            if c0 + i > 60_000 and k % 53 == 0:
                for s in [*snaps, snap]:
                    check(s)
                    checked += 1
        cut = max(0, len(p_all) - keep)
        del p_all[:cut]
        del v_all[:cut]
        origin += cut
    snap = a.live("X")
    assert snap is not None
    check(snap)
    assert checked > n // batch_size // 60


@pytest.mark.slow
def test_no_drift_after_ten_million_trades() -> None:
    drift_check(10_000_000, 1_000, seed=1)


def test_no_drift_after_one_million_trades() -> None:
    drift_check(1_000_000, 250, seed=2)


def test_live_closes_are_bucket_last_prices() -> None:
    """The screen's price series: the window cut into equal buckets, last price of each."""
    from stockup_tui.engine.model import SymbolBatch

    az = Analyzer([10_000], emit_interval_ms=1000)
    # trades at 1.5 s, 2.5 s, 2.9 s, 7.1 s (prices 1, 2, 3, 4); window (0, 10 s] at end 10 s
    az.trades(
        SymbolBatch(
            "X", [1500, 2500, 2900, 7100], [1.0, 2.0, 3.0, 4.0], [1.0] * 4, [None] * 4, [(7.2, 4)]
        )
    )
    az.watermark(10_000)
    snap = az.live("X", points=5)
    assert snap is not None and snap.ts_ms == 10_000
    # buckets end at 2, 4, 6, 8, 10 s: closes 1, 3, 3, 4, 4
    assert snap.windows[0].closes == (1.0, 3.0, 3.0, 4.0, 4.0)
    assert az.live("X").windows[0].closes == ()
    # a bucket before the first trade is left out
    snap = az.live("X", points=10)
    assert snap.windows[0].closes[0] == 1.0 and len(snap.windows[0].closes) == 9


def test_a_late_trade_inside_the_open_bucket_reaches_the_next_live_extremes() -> None:
    """Live queries keep the extremes of the open bucket's trades scanned so far; a trade
    inserted among them (out of order, after the last boundary) must still count."""
    store = SymbolWindows([10_000], 1_000)
    store.extend([100, 900, 1_100, 1_200, 1_300], [5.0, 5.0, 6.0, 7.0, 6.5], [1.0] * 5)
    first = store.query(1_300)[0]  # live: the open bucket (1000, 2000] is partly scanned
    assert (first.min, first.max, first.count) == (5.0, 7.0, 5)
    store.insert(1_150, 9.0, 1.0)  # before trades the last query already read
    store.insert(1_250, 1.0, 1.0)
    store.extend([1_400], [6.0], [1.0])
    second = store.query(1_400)[0]
    assert (second.min, second.max, second.count) == (1.0, 9.0, 8)
    assert second.first == 5.0 and second.last == 6.0
