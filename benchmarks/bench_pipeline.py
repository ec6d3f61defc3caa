"""End-to-end throughput and latency on the default path:
simulator (own process) -> websocket -> parse + dedup -> memory bus -> analyzer.

The simulator runs as `stockup-tui simulate` in a second process (the other core), as a real feed
would be elsewhere; the pipeline runs here exactly as `--headless` runs it.

    python benchmarks/bench_pipeline.py --rate 400000 --seconds 20     # throughput
    python benchmarks/bench_pipeline.py --rate 10000 --seconds 20      # latency at 10k/s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from stockup_tui.config import Settings
from stockup_tui.engine.wiring import build_pipeline

#: The checkout this script belongs to. Child processes run from it, so that they run its code
#: whatever the caller's directory (`python -m` puts the working directory first on the path):
#: a before/after comparison from two checkouts compares two versions, not one twice.
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(
    port: int, rate: float, symbols: int, duplicates: float = 0.02
) -> subprocess.Popen[bytes]:
    """`stockup-tui simulate` in its own process (the other core), as a real feed would be."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "stockup_tui", "simulate", "--port", str(port),
            "--rate", str(rate), "--seed", "1", "--symbol-limit", str(symbols),
            "--duplicate-fraction", str(duplicates), "--log-level", "WARNING",
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")},
        cwd=ROOT,
    )  # fmt: skip


async def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=400_000, help="simulator trades/s offered")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--windows", default="1m")
    ap.add_argument("--duplicates", type=float, default=0.02)
    ap.add_argument("--flush", help="bus.flush_interval (default: the app's)")
    args = ap.parse_args()

    port = free_port()
    sim = start_simulator(port, args.rate, args.symbols, args.duplicates)
    try:
        await wait_port(port)
        symbols = [f"SYM{i:02d}" for i in range(args.symbols)]
        settings = Settings.model_validate(
            {
                "symbols": symbols,
                "windows": args.windows,
                "source": {"kind": "finnhub", "url": f"ws://127.0.0.1:{port}"},
                "bus": {"flush_interval": args.flush} if args.flush else {},
            }
        )
        pipe = build_pipeline(settings, live_interval=1.0)
        await pipe.start()
        me, other = psutil.Process(), psutil.Process(sim.pid)
        await asyncio.sleep(args.warmup)
        pipe.latency.reset()
        n0, t0 = pipe.analyzer.ingested, time.perf_counter()
        c0, s0 = me.cpu_times(), other.cpu_times()
        await asyncio.sleep(args.seconds)
        n1, t1 = pipe.analyzer.ingested, time.perf_counter()
        c1, s1 = me.cpu_times(), other.cpu_times()
        p50, p99 = pipe.latency.overall()
        await pipe.stop()
    finally:
        sim.terminate()
        sim.wait(10)

    elapsed = t1 - t0
    cpu = (c1.user + c1.system - c0.user - c0.system) / elapsed * 100
    sim_cpu = (s1.user + s1.system - s0.user - s0.system) / elapsed * 100
    print(f"offered rate        {args.rate:>12,.0f} trades/s ({args.symbols} symbols)")
    print(f"analyzed            {(n1 - n0) / elapsed:>12,.0f} trades/s over {elapsed:.1f}s")
    print(f"latency recv->apply p50 {p50 * 1000 if p50 else float('nan'):.2f} ms   "
          f"p99 {p99 * 1000 if p99 else float('nan'):.2f} ms")  # fmt: skip
    print(f"cpu pipeline        {cpu:>6.0f}% of a core   simulator {sim_cpu:.0f}%")
    drops = pipe.drops.snapshot()
    print(f"drops               {drops or 'none'}")


if __name__ == "__main__":
    asyncio.run(main())
