"""Property tests: the analyzer against an independent, trade-by-trade brute-force reference, and
the promise that its output is a pure function of the log.

The reference applies the rules of `stockup_tui.engine.analyzer.analyzer` literally, one trade at a
time in the order received, and computes every snapshot with plain loops over the trades applied
so far. Any difference in emitted snapshots, live snapshots or counters is a bug in one of the
fast paths (batch splitting, bucket sums and extremes, rebuilt deques, compaction).

Then, over the same random logs (absurd timestamps, duplicated batches, watermark records,
out-of-order trades included): a restart from the checkpoint taken after any record emits
exactly what the analyzer that never stopped emitted, and several partitions read in any
interleaving give the same snapshots.
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
        "rate": brute_rate(len(inside), end - min(tr[0] for tr in inside), width),
    }


def brute_rate(count: int, since_first: int, width: int) -> float:
    """The rule: trades per second over the span from the first trade to the end plus one
    average gap, that span at least 1 s and at most the window."""
    span = since_first + (since_first / (count - 1) if count > 1 else 0)
    span = min(width, max(span, 1000))
    return count / (span / 1000)


@dataclass
class RefSymbol:
    next_b: int
    closed: float = float("-inf")
    trades: list[tuple[int, int, float, float]] = field(default_factory=list)
    last: tuple[int, float] | None = None


class Reference:
    """The rules of one partition, one trade and one boundary at a time, brute-force metrics."""

    def __init__(self, windows_ms: Sequence[int], interval: int, max_future: int) -> None:
        self.windows = list(windows_ms)
        self.longest = max(windows_ms)
        self.interval = interval
        self.max_future = max_future
        self.syms: dict[str, RefSymbol] = {}
        self.wm: int | None = None
        self.seen: set[tuple[str, str, int]] = set()
        self.seq = 0
        self.late = self.too_old = self.ingested = self.future = self.dupes = 0

    def ceil(self, t: int) -> int:
        return math.ceil(t / self.interval) * self.interval

    def first_open(self) -> int | None:
        return None if self.wm is None else self.wm // self.interval * self.interval + self.interval

    def snapshot(self, name: str, end: int) -> dict:
        s = self.syms[name]
        return {
            "symbol": name,
            "ts_ms": end,
            "last_price": s.last[1] if s.last else None,
            "last_trade_ms": s.last[0] if s.last else None,
            "windows": [brute_metrics(s.trades, end, w) for w in self.windows],
        }

    def _close(self, name: str, stop: int, out: list[dict]) -> bool:
        """Closes boundaries up to `stop` inclusive; True if the symbol went quiet."""
        s = self.syms[name]
        while s.next_b <= stop:
            snap = self.snapshot(name, s.next_b)
            out.append(snap)
            s.closed = s.next_b
            s.next_b += self.interval
            if all(w["count"] == 0 for w in snap["windows"]):
                return True
        return False

    def trades(self, batch: SymbolBatch) -> list[dict]:
        out: list[dict] = []
        name = batch.symbol
        if batch.bid is not None:
            key = (batch.bid[0], name, batch.bid[1])
            if key in self.seen:
                self.dupes += len(batch.t)
                return out
            self.seen.add(key)
        recv = [when for when, n in batch.recv for _ in range(n)] or [None] * len(batch.t)
        for t, p, v, r in zip(batch.t, batch.p, batch.v, recv, strict=True):
            self.ingested += 1
            if r is not None and t > r * 1000 + self.max_future:
                self.future += 1
                continue
            s = self.syms.get(name)
            if s is None:
                first = self.first_open()
                if first is not None and t <= first - self.longest:
                    self.too_old += 1
                    continue
                s = self.syms[name] = RefSymbol(
                    next_b=self.ceil(t) if first is None else max(self.ceil(t), first)
                )
            elif t <= s.next_b - self.longest:
                self.too_old += 1
                continue
            if s.next_b < t and self._close(name, self.ceil(t) - self.interval, out):
                s.next_b = self.ceil(t)  # quiet in between: the rest were empty
            wm_closed = -math.inf if self.wm is None else self.wm // self.interval * self.interval
            if t <= max(s.closed, wm_closed):
                self.late += 1
            self.seq += 1
            s.trades.append((t, self.seq, p, v))
            if s.last is None or t >= s.last[0]:
                s.last = (t, p)
        return out

    def watermark(self, wm: int, final: bool) -> list[dict]:
        self.wm = wm if self.wm is None else max(self.wm, wm)
        last_b = self.wm // self.interval * self.interval
        out: list[dict] = []
        for name in list(self.syms):
            s = self.syms[name]
            assert s.last is not None
            stop = max(last_b, self.ceil(s.last[0])) if final else last_b
            if self._close(name, stop, out):
                del self.syms[name]
        out.sort(key=lambda snap: (snap["ts_ms"], snap["symbol"]))
        return out

    def live(self, name: str) -> dict | None:
        s = self.syms.get(name)
        if s is None:
            return None
        assert s.last is not None
        return self.snapshot(name, max(s.last[0], s.next_b - self.interval))


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
    """Shrink the store's size constants so that tiny examples reach the compaction of the
    arrays and the dropping of reduced buckets."""
    names = ("_COMPACT_MIN", "_BUCKETS_COMPACT")
    saved = {name: getattr(window, name) for name in names}
    window._COMPACT_MIN, window._BUCKETS_COMPACT = 4, 2
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(window, name, value)


# -- random logs ----------------------------------------------------------------------------------

SYMBOLS = ("AAA", "BBB", "CCC")
PRICES = (0.0, 1.0, 1.5, 2.0, 99.99, 100.0, 100.01, 1e-4, 1e5)
T0 = 1_000_000  # the logs' receive clock starts here (ms)

# A log record: ("t", SymbolBatch) or ("w", wm_ms, final) or ("live", symbol).
Record = tuple


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[int], int, int, list[Record]]:
    """Windows, interval, max_future and one partition's records: batches stamped with a receive
    clock that moves on, watermarks behind it, duplicated batches, absurd and late timestamps."""
    windows = draw(st.lists(st.sampled_from([50, 100, 250, 400, 1000]), min_size=1, max_size=3))
    interval = draw(st.sampled_from([i for i in (10, 50, 100, 170, 600) if i <= max(windows)]))
    max_future = draw(st.sampled_from([0, 20, 100]))
    lateness = draw(st.sampled_from([0, 30, 200]))
    clock = T0 + draw(st.integers(0, 2000))
    records: list[Record] = []
    sent: list[SymbolBatch] = []
    seq = 0
    for _ in range(draw(st.integers(1, 45))):
        kind = draw(st.sampled_from(["batch"] * 6 + ["wm", "wm", "dup", "live", "final"]))
        clock += draw(st.sampled_from([0, 1, 10, 40, 90, 300, 1500]))
        if kind == "batch":
            sym = draw(st.sampled_from(SYMBOLS))
            trades = []
            for _ in range(draw(st.integers(0, 10))):
                lag = draw(st.sampled_from([0, 0, 1, 3, 10, 40, 90, 300, 700, -60, -150]))
                if draw(st.integers(0, 40)) == 0:
                    t = draw(st.sampled_from([1, clock + 3_600_000, clock - 3_600_000]))
                else:
                    t = max(1, clock - lag)
                price = draw(
                    st.one_of(
                        st.sampled_from(PRICES),
                        st.floats(0.01, 1000, allow_nan=False, allow_infinity=False),
                    )
                )
                volume = draw(st.sampled_from([0.0, 1.0, 2.0, 100.0, 0.5, 1e6]))
                trades.append((t, price, volume))
            seq += 1
            batch = SymbolBatch(
                sym,
                [t for t, _, _ in trades],
                [p for _, p, _ in trades],
                [v for *_, v in trades],
                [None] * len(trades),
                [(clock / 1000, len(trades))] if trades else [],
                ("producer", seq),
            )
            sent.append(batch)
            records.append(("t", batch))
        elif kind == "dup" and sent:
            records.append(("t", draw(st.sampled_from(sent))))
        elif kind in ("wm", "final"):
            back = draw(st.sampled_from([0, 0, 0, 500]))  # now and then an older watermark
            records.append(("w", max(1, clock - lateness - back), kind == "final"))
        elif kind == "live":
            records.append(("live", draw(st.sampled_from(SYMBOLS))))
    return windows, interval, max_future, records


def run_against_reference(
    windows: list[int], interval: int, max_future: int, records: list[Record]
) -> None:
    analyzer = Analyzer(windows, emit_interval_ms=interval, max_future_ms=max_future)
    ref = Reference(windows, interval, max_future)
    for k, rec in enumerate(records):
        where = f"record {k} {rec[0]}"
        if rec[0] == "t":
            assert_all(analyzer.trades(rec[1], offset=k), ref.trades(rec[1]), where)
        elif rec[0] == "w":
            got = analyzer.watermark(rec[1], offset=k, final=rec[2])
            assert_all(got, ref.watermark(rec[1], rec[2]), where)
        else:
            if rec[1] in ref.syms:
                assert_snapshot(analyzer.live(rec[1]), ref.live(rec[1]), where)
        c = analyzer.counters
        assert (c.late, c.too_old, c.ingested, c.future_time, c.bus_duplicate) == (
            ref.late,
            ref.too_old,
            ref.ingested,
            ref.future,
            ref.dupes,
        ), where
    for sym in ref.syms:
        assert_snapshot(analyzer.live(sym), ref.live(sym), f"final live {sym}")
    assert analyzer.symbols == list(ref.syms)


@settings(max_examples=150, deadline=None)
@given(logs())
def test_matches_reference(log: tuple[list[int], int, int, list[Record]]) -> None:
    run_against_reference(*log)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs())
def test_matches_reference_with_tiny_structures(
    log: tuple[list[int], int, int, list[Record]],
) -> None:
    with small_structures():
        run_against_reference(*log)


def random_log(rng: random.Random, n: int, late_share: float = 0.03) -> list[Record]:
    """A long log: bursts per symbol, watermarks every few records, some late and absurd trades."""
    clock = T0
    records: list[Record] = []
    seq = 0
    for _ in range(n):
        r = rng.random()
        clock += rng.choice([0, 1, 5, 20, 20, 50])
        if r < 0.8:
            sym = rng.choice(SYMBOLS)
            trades = []
            for _ in range(rng.randint(1, 30)):
                clock += rng.choice([0, 1, 3])
                t = clock - (rng.choice([0, 0, 1, 5, 60]) if rng.random() > late_share else 900)
                if rng.random() < 0.002:
                    t = rng.choice([1, clock + 10**7])
                price = rng.choice([round(rng.uniform(90, 110), 2), rng.choice(PRICES)])
                trades.append((t, price, rng.choice([0.0, 1.0, 7.0, 250.0])))
            seq += 1
            records.append(
                (
                    "t",
                    SymbolBatch(
                        sym,
                        [t for t, _, _ in trades],
                        [p for _, p, _ in trades],
                        [v for *_, v in trades],
                        [None] * len(trades),
                        [(clock / 1000, len(trades))],
                        ("p", seq),
                    ),
                )
            )
        elif r < 0.86 and records:
            old = rng.choice(records[-50:])
            if old[0] == "t":
                records.append(old)  # a redelivered batch
        elif r < 0.9:
            records.append(("live", rng.choice(SYMBOLS)))
        else:
            records.append(("w", clock - 40, False))
    return records


@pytest.mark.parametrize("seed", range(2))
def test_long_random_log_with_tiny_structures(seed: int) -> None:
    """Long logs reach states the short hypothesis examples do not (many compactions)."""
    records = random_log(random.Random(seed), 1500)
    with small_structures():
        run_against_reference([300, 1000, 2500], 100, 50, records)
    run_against_reference([300, 1000, 2500], 100, 50, records)


# -- the output is a pure function of the log -----------------------------------------------------


def emissions(
    analyzer: Analyzer, records: Sequence[Record], start: int, partition: int = 0
) -> list[list[SymbolSnapshot]]:
    """Feeds `records[start:]` (offsets = positions) and returns each record's snapshots."""
    out = []
    for k in range(start, len(records)):
        rec = records[k]
        if rec[0] == "t":
            out.append(analyzer.trades(rec[1], partition, k))
        elif rec[0] == "w":
            out.append(analyzer.watermark(rec[1], partition, k, final=rec[2]))
        else:
            out.append([])
    return out


def restarted(
    windows: list[int], interval: int, max_future: int, records: Sequence[Record], cut: int
) -> list[list[SymbolSnapshot]]:
    """A second analyzer killed after record `cut - 1` and started again from its checkpoint:
    replays from the checkpoint without emitting, then goes on. Returns what it emits from
    record `cut` on."""
    first = Analyzer(windows, emit_interval_ms=interval, max_future_ms=max_future)
    emissions(first, records[:cut], 0)
    cp = first.checkpoint(0, cut)
    assert cp.replay_from <= cut
    second = Analyzer(windows, emit_interval_ms=interval, max_future_ms=max_future)
    second.start_partition(0, cp.watermark_ms)
    for k in range(cp.replay_from, cut):
        rec = records[k]
        if rec[0] == "t":
            assert second.trades(rec[1], 0, k, emit=False) == []
        elif rec[0] == "w":
            assert second.watermark(rec[1], 0, k, emit=False, final=rec[2]) == []
    return emissions(second, records, cut)


def assert_same(got: list[list[SymbolSnapshot]], want: list[list[SymbolSnapshot]], where: str):
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert [(s.symbol, s.ts_ms) for s in g] == [(s.symbol, s.ts_ms) for s in w], (where, k)
        assert g == w, (where, k)  # exact: the same floats, so InfluxDB overwrites alike


@settings(max_examples=150, deadline=None)
@given(logs(), st.data())
def test_restart_from_any_checkpoint_emits_the_same(
    log: tuple[list[int], int, int, list[Record]], data: st.DataObject
) -> None:
    windows, interval, max_future, records = log
    whole = emissions(Analyzer(windows, interval, max_future), records, 0)
    cut = data.draw(st.integers(0, len(records)))
    got = restarted(windows, interval, max_future, records, cut)
    assert_same(got, whole[cut:], f"cut at {cut}")


@pytest.mark.parametrize("seed", range(3))
def test_restart_at_every_record_of_a_long_log(seed: int) -> None:
    rng = random.Random(seed)
    records = random_log(rng, 700, late_share=0.1)
    whole = emissions(Analyzer([300, 1000], 100, 50), records, 0)
    for cut in range(0, len(records), 7):
        got = restarted([300, 1000], 100, 50, records, cut)
        assert_same(got, whole[cut:], f"cut at {cut}")


def test_replay_from_the_checkpoint_is_bounded() -> None:
    """The checkpoint keeps about the longest window (plus two intervals) of records, not the
    whole history, once watermarks flow."""
    records = random_log(random.Random(5), 3000)
    analyzer = Analyzer([300], 100, 50)
    emissions(analyzer, records, 0)
    cp = analyzer.checkpoint(0, len(records))
    span = sum(1 for rec in records[cp.replay_from :] if rec[0] == "t")
    assert 0 < span < 200, span


@settings(max_examples=60, deadline=None)
@given(st.lists(logs(), min_size=2, max_size=3), st.randoms(use_true_random=False))
def test_partitions_read_in_any_order_give_the_same_snapshots(
    parts: list[tuple[list[int], int, int, list[Record]]], rng: random.Random
) -> None:
    """Several partitions, each its own log, read one after the other and then interleaved in
    a random order: every partition's snapshots are the same."""
    windows, interval, max_future, _ = parts[0]
    logs_ = [records for *_, records in parts]
    alone = [
        emissions(Analyzer(windows, interval, max_future), records, 0, n)
        for n, records in enumerate(logs_)
    ]
    order = [n for n, records in enumerate(logs_) for _ in records]
    rng.shuffle(order)
    mixed = Analyzer(windows, interval, max_future)
    got: list[list[list[SymbolSnapshot]]] = [[] for _ in logs_]
    position = [0] * len(logs_)
    for n in order:
        k = position[n]
        position[n] += 1
        got[n].extend(emissions_one(mixed, logs_[n][k], n, k))
    for n in range(len(logs_)):
        assert_same(got[n], alone[n], f"partition {n}")


def emissions_one(analyzer: Analyzer, rec: Record, partition: int, offset: int) -> list:
    if rec[0] == "t":
        return [analyzer.trades(rec[1], partition, offset)]
    if rec[0] == "w":
        return [analyzer.watermark(rec[1], partition, offset, final=rec[2])]
    return [[]]


def test_one_absurd_timestamp_costs_one_drop_and_nothing_else() -> None:
    """A trade an hour ahead, or at 1970, first or in the middle: one counted drop; every
    other snapshot is what it is without it."""
    clean = random_log(random.Random(9), 400, late_share=0.0)
    for position in (0, 1, 200):
        for absurd in (1, T0 + 3_600_000, 4_102_444_800_000):
            records = list(clean)
            bad = SymbolBatch("AAA", [absurd], [1.0], [1.0], [None], [(T0 / 1000, 1)], ("x", 1))
            records.insert(position, ("w", T0 - 40, False))
            records.insert(position + 1, ("t", bad))
            baseline = list(clean)
            baseline.insert(position, ("w", T0 - 40, False))
            a = Analyzer([300, 1000], 100, 50)
            b = Analyzer([300, 1000], 100, 50)
            got = [s for batch in emissions(a, records, 0) for s in batch]
            want = [s for batch in emissions(b, baseline, 0) for s in batch]
            assert got == want, (position, absurd)
            drops = a.counters.future_time + a.counters.too_old
            assert drops == b.counters.future_time + b.counters.too_old + 1, (position, absurd)


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
        analyzer.trades(SymbolBatch("X", [ti], [pi], [vi]))
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
