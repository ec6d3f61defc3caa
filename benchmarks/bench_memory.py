"""Memory stays flat: resident size of the whole pipeline (embedded simulator included) at a
steady trade rate, sampled every minute.

    python benchmarks/bench_memory.py --rate 10000 --minutes 10

Prints RSS per minute and the ratio of the last sample to the one at minute 1 (the windows are
full after their length, so growth after that would be a leak).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

import psutil

from stockup_tui.config import Settings
from stockup_tui.engine.wiring import build_pipeline


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=10_000)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--windows", default="1m")
    args = ap.parse_args()

    settings = Settings.model_validate(
        {
            "symbols": [f"SYM{i:02d}" for i in range(args.symbols)],
            "windows": args.windows,
            "simulator": {"rate": args.rate, "seed": 5},
        }
    )
    pipe = build_pipeline(settings, live_interval=0.1)
    await pipe.start()
    proc = psutil.Process()
    samples: list[tuple[float, float, int]] = []
    started = time.monotonic()
    try:
        minute = 1
        while minute <= args.minutes:
            await asyncio.sleep(max(0.0, started + minute * 60 - time.monotonic()))
            gc.collect()
            rss = proc.memory_info().rss / 2**20
            samples.append((minute, rss, pipe.analyzer.ingested))
            print(f"minute {minute:>3}: rss {rss:8.1f} MiB  trades {pipe.analyzer.ingested:,}")
            minute += 1
    finally:
        await pipe.stop()
    if len(samples) >= 2:
        first, last = samples[0][1], samples[-1][1]
        print(f"rss at minute {samples[-1][0]:g} / minute 1 = {last / first:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
