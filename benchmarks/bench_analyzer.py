"""Throughput of the `Analyzer` on a synthetic market, as the pipeline feeds it.

Trades arrive in event-time order at `--event-rate` trades per second *over all symbols*, each on a
random symbol; every publish batch of ``--batch x --symbols`` trades is split by symbol into
`SymbolBatch` messages (about `--batch` trades each), which is what the bus delivers, and a
watermark record follows whenever the event clock passes a new second (what the query side
writes into every partition). All records are generated before the clock starts, so the figure
is the analyzer alone.

    python benchmarks/bench_analyzer.py --symbols 50 --window 60 --event-rate 3000 \
        --trades 2000000 --batch 20 --mode both

Mode ``one`` uses the single window `--window`; mode ``two`` uses 1 min and 5 min windows.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import time
from collections.abc import Sequence

from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.model import SymbolBatch, Watermark

LATENESS_MS = 2_000


def make_batches(
    symbols: int, event_rate: float, trades: int, batch: int, seed: int = 1
) -> list[SymbolBatch | Watermark]:
    """Synthetic stream: Poisson arrivals, random-walk prices per symbol, lognormal-ish sizes."""
    rng = random.Random(seed)
    names = [f"S{i:03d}" for i in range(symbols)]
    prices = [rng.uniform(10.0, 500.0) for _ in range(symbols)]
    publish = max(1, batch * symbols)
    mean_gap_ms = 1000.0 / event_rate
    now = 1_700_000_000_000.0
    out: list[SymbolBatch | Watermark] = []
    done = 0
    second = int(now) // 1000
    while done < trades:
        size = min(publish, trades - done)
        groups: dict[int, SymbolBatch] = {}
        for _ in range(size):
            now += rng.expovariate(1.0) * mean_gap_ms
            k = rng.randrange(symbols)
            prices[k] *= 1.0 + rng.gauss(0.0, 2e-4)
            g = groups.get(k)
            if g is None:
                g = groups[k] = SymbolBatch(names[k])
            g.t.append(int(now))
            g.p.append(round(prices[k], 4))
            g.v.append(float(rng.randint(1, 500)))
        out.extend(groups.values())
        done += size
        if int(now) // 1000 > second:
            second = int(now) // 1000
            out.append(Watermark(int(now) - LATENESS_MS))
    return out


def run(
    batches: Sequence[SymbolBatch | Watermark],
    windows_ms: Sequence[int],
    repeat: int,
    profile: bool,
) -> None:
    """Feed every batch to a fresh analyzer `repeat` times; print the best trades/s.

    CPU time (`process_time`) is reported next to wall time: on a shared machine it is the
    better estimate of what one core does.
    """
    best_wall = best_cpu = float("inf")
    emitted = n = 0
    for _ in range(repeat):
        analyzer = Analyzer(windows_ms, emit_interval_ms=1000)
        trades = analyzer.trades
        watermark = analyzer.watermark
        emitted = 0
        profiler = cProfile.Profile() if profile else None
        gc.collect()
        gc.disable()
        try:
            if profiler:
                profiler.enable()
            wall = time.perf_counter()
            cpu = time.process_time()
            for b in batches:
                if type(b) is SymbolBatch:
                    emitted += len(trades(b))
                else:
                    emitted += len(watermark(b.wm_ms))
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
            if profiler:
                profiler.disable()
        finally:
            gc.enable()
        best_wall = min(best_wall, wall)
        best_cpu = min(best_cpu, cpu)
        n = analyzer.ingested
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    label = "+".join(f"{w // 1000}s" for w in windows_ms)
    print(
        f"windows={label:<8} trades={n:,} records={len(batches):,} (best of {repeat}): "
        f"wall {best_wall:.3f}s -> {n / best_wall:,.0f} trades/s; "
        f"cpu {best_cpu:.3f}s -> {n / best_cpu:,.0f} trades/s; "
        f"snapshots emitted={emitted:,} ({emitted / best_wall:,.0f}/s wall)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--window", type=int, default=60, help="window length in seconds")
    parser.add_argument("--event-rate", type=float, default=3000, help="trades/s of event time")
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=20, help="mean trades per SymbolBatch")
    parser.add_argument("--mode", choices=("one", "two", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the best counts")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    args = parser.parse_args()

    t0 = time.perf_counter()
    batches = make_batches(args.symbols, args.event_rate, args.trades, args.batch)
    print(f"generated {args.trades:,} trades in {time.perf_counter() - t0:.1f}s")
    if args.mode in ("one", "both"):
        run(batches, [args.window * 1000], args.repeat, args.profile)
    if args.mode in ("two", "both"):
        run(batches, [60_000, 300_000], args.repeat, args.profile)


if __name__ == "__main__":
    main()
