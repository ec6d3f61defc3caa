"""End to end through the local Kafka broker (scripts/kafka.sh start):
simulator (own process) -> websocket -> parse + dedup -> Kafka producer -> broker -> consumer
group -> analyzer, with the metrics-topic transactions on, as `--headless --bus kafka` runs it.

    python benchmarks/bench_kafka.py --rate 300000 --seconds 20    # throughput
    python benchmarks/bench_kafka.py --rate 10000 --seconds 20     # latency at 10k/s

Producer throughput = trades the broker acknowledged per second; consumer throughput = trades the
analyzer applied per second. Each run uses fresh topics and group (deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid

import psutil
from bench_pipeline import free_port, wait_port

from stockup_tui.config import Settings
from stockup_tui.engine.pipeline import Pipeline


def java_cpu() -> float:
    """CPU seconds of the Kafka broker (the JVM running kafka.Kafka), 0 if not found."""
    total = 0.0
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        if "kafka.Kafka" in " ".join(proc.info["cmdline"] or []):
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=300_000, help="simulator trades/s offered")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--windows", default="1m")
    ap.add_argument("--flush", default="20ms", help="bus.flush_interval")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    kafka = {
        "bootstrap_servers": args.bootstrap,
        "topic": f"bench.{tag}.trades",
        "metrics_topic": f"bench.{tag}.metrics",
        "control_topic": f"bench.{tag}.control",
        "dead_letter_topic": f"bench.{tag}.dlq",
        "group_id": f"bench.{tag}",
    }
    port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "stockup_tui", "simulate", "--port", str(port),
            "--rate", str(args.rate), "--seed", "1", "--symbol-limit", str(args.symbols),
            "--log-level", "WARNING",
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")},
    )  # fmt: skip
    try:
        await wait_port(port)
        settings = Settings.model_validate(
            {
                "symbols": [f"SYM{i:02d}" for i in range(args.symbols)],
                "windows": args.windows,
                "source": {"kind": "finnhub", "url": f"ws://127.0.0.1:{port}"},
                "bus": {"kind": "kafka", "flush_interval": args.flush},
                "kafka": kafka,
            }
        )
        pipe = Pipeline.from_settings(settings, live_interval=1.0)
        await pipe.start()
        pub = pipe.bus.publisher  # type: ignore[attr-defined]
        me, other = psutil.Process(), psutil.Process(sim.pid)
        await asyncio.sleep(args.warmup)
        pipe.latency.reset()
        a0, n0, t0 = pub.acked_trades, pipe.analyzer.ingested, time.perf_counter()
        c0, s0, j0 = me.cpu_times(), other.cpu_times(), java_cpu()
        await asyncio.sleep(args.seconds)
        a1, n1, t1 = pub.acked_trades, pipe.analyzer.ingested, time.perf_counter()
        c1, s1, j1 = me.cpu_times(), other.cpu_times(), java_cpu()
        p50, p99 = pipe.latency.overall()
        lag = sum(pipe.bus.reader.lag.values())  # type: ignore[attr-defined]
        await pipe.stop()
    finally:
        sim.terminate()
        sim.wait(10)
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
        admin.delete_topics([v for k, v in kafka.items() if k.endswith("topic")])
        admin.close()

    elapsed = t1 - t0

    def pct(a: float, b: float) -> float:
        return (b - a) / elapsed * 100

    print(f"offered rate        {args.rate:>12,.0f} trades/s ({args.symbols} symbols)")
    print(f"producer (acked)    {(a1 - a0) / elapsed:>12,.0f} trades/s over {elapsed:.1f}s")
    print(f"consumer (analyzed) {(n1 - n0) / elapsed:>12,.0f} trades/s   lag at end {lag:,} msgs")
    print(f"latency recv->apply p50 {p50 * 1000 if p50 else float('nan'):.2f} ms   "
          f"p99 {p99 * 1000 if p99 else float('nan'):.2f} ms")  # fmt: skip
    cpu = pct(c0.user + c0.system, c1.user + c1.system)
    sim_cpu = pct(s0.user + s0.system, s1.user + s1.system)
    print(f"cpu pipeline {cpu:.0f}%  broker {pct(j0, j1):.0f}%  simulator {sim_cpu:.0f}% of a core")
    print(f"drops               {pipe.drops.snapshot() or 'none'}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    asyncio.run(main())
