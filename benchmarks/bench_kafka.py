"""End to end through the local Kafka broker (scripts/kafka.sh start):
simulator (own process) -> websocket -> parse + dedup -> Kafka producer -> broker -> consumer
group -> analyzer, snapshots to the metrics topic, as `--headless --bus kafka` runs it.

    python benchmarks/bench_kafka.py --rate 300000 --seconds 20    # throughput
    python benchmarks/bench_kafka.py --rate 10000 --seconds 20     # latency at 10k/s
    python benchmarks/bench_kafka.py --split ...                   # query in its own process

By default one process runs the whole pipeline through the broker (`--bus kafka`, role all).
`--split` runs the query role (source -> Kafka) as a separate `stockup-tui --headless --role
query` process, as a scaled-out deployment does; this process is then the analyzer, and the
producer figure is the query process's trades/s from its status records (the status topic).

Producer throughput = trades the broker acknowledged per second; consumer throughput = trades the
analyzer applied per second. Each run uses fresh topics and group (deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import tomlkit
from bench_pipeline import ROOT, free_port, start_simulator, wait_port

from stockup_tui.config import Role, Settings
from stockup_tui.engine.bus.kafka.bus import KafkaBus
from stockup_tui.engine.cluster import parse_status
from stockup_tui.engine.stats import KafkaFigures
from stockup_tui.engine.wiring import build_pipeline


def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def collect(proc: subprocess.Popen[str], lines: list[tuple[float, str]]) -> None:
    """The query process's status lines, with the time they arrived."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.time(), line))


async def query_rates(bus: KafkaBus, since_ms: int, rates: list[tuple[float, float]]) -> None:
    """The query process's trades/s from its status records (the status topic), with their
    time: the figures themselves, not its status line's text."""
    async for batch in bus.watch_status(since_ms):
        for value, ts_ms in batch:
            with contextlib.suppress(ValueError):
                st = parse_status(value)
                if st.identity.role == Role.QUERY:
                    rates.append((ts_ms / 1000, st.source_per_s))


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
    ap.add_argument("--flush", help="bus.flush_interval (default: the app's)")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--split", action="store_true", help="run the query role in its own process")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    kafka = {
        "bootstrap_servers": args.bootstrap,
        "topic": f"bench.{tag}.trades",
        "metrics_topic": f"bench.{tag}.metrics",
        "control_topic": f"bench.{tag}.control",
        "status_topic": f"bench.{tag}.status",
        "dead_letter_topic": f"bench.{tag}.dlq",
        "group_id": f"bench.{tag}",
        "status_interval": "1s",
    }
    port = free_port()
    sim = start_simulator(port, args.rate, args.symbols)
    query: subprocess.Popen[str] | None = None
    lines: list[tuple[float, str]] = []
    rates: list[tuple[float, float]] = []  # (time, trades/s) of the query process
    watching: asyncio.Task[None] | None = None
    try:
        await wait_port(port)
        data = {
            "symbols": [f"SYM{i:02d}" for i in range(args.symbols)],
            "windows": args.windows.split(","),
            "source": {"kind": "finnhub", "url": f"ws://127.0.0.1:{port}"},
            "bus": {"kind": "kafka", **({"flush_interval": args.flush} if args.flush else {})},
            "kafka": kafka,
        }
        if args.split:
            cfg = Path(tempfile.mkdtemp()) / "query.toml"
            cfg.write_text(tomlkit.dumps(data))
            query = subprocess.Popen(
                [sys.executable, "-m", "stockup_tui", "--config", str(cfg), "--headless",
                 "--role", "query", "--status-interval", "1", "--log-level", "WARNING"],
                stdout=subprocess.PIPE, text=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")},
                cwd=ROOT,
            )  # fmt: skip
            threading.Thread(target=collect, args=(query, lines), daemon=True).start()
        settings = Settings.model_validate({**data, "role": "analyzer" if args.split else "all"})
        pipe = build_pipeline(settings, live_interval=1.0)
        await pipe.start()
        bus = pipe.bus
        assert isinstance(bus, KafkaBus)
        pub = bus.publisher
        if args.split:
            watching = asyncio.create_task(query_rates(bus, int(time.time() * 1000), rates))
        me, other = psutil.Process(), psutil.Process(sim.pid)
        others = [other] + ([psutil.Process(query.pid)] if query else [])
        await asyncio.sleep(args.warmup)
        pipe.latency.reset()
        a0, n0, t0, w0 = pub.acked_trades, pipe.analyzer.ingested, time.perf_counter(), time.time()
        c0, s0, j0 = me.cpu_times(), [cpu_of(o) for o in others], java_cpu()
        await asyncio.sleep(args.seconds)
        a1, n1, t1, w1 = pub.acked_trades, pipe.analyzer.ingested, time.perf_counter(), time.time()
        c1, s1, j1 = me.cpu_times(), [cpu_of(o) for o in others], java_cpu()
        p50, p99 = pipe.latency.overall()
        figures = bus.stats.detail
        group = figures.group if isinstance(figures, KafkaFigures) else None
        lag = (group.lag_total if group else None) or 0
        if watching is not None:
            watching.cancel()
        await pipe.stop()
    finally:
        if query is not None:
            query.send_signal(signal.SIGINT)
            query.wait(30)
        sim.terminate()
        sim.wait(10)
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
        admin.delete_topics([v for k, v in kafka.items() if k.endswith("topic")])
        admin.close()

    elapsed = t1 - t0

    def pct(a: float, b: float) -> float:
        return (b - a) / elapsed * 100

    if args.split:
        measured = [rate for at, rate in rates if w0 + 1 <= at <= w1]
        produced = sum(measured) / len(measured) if measured else float("nan")
        label = "producer (query)"
    else:
        produced, label = (a1 - a0) / elapsed, "producer (acked)"
    print(f"offered rate        {args.rate:>12,.0f} trades/s ({args.symbols} symbols)"
          f"{' - query and analyzer in two processes' if args.split else ''}")  # fmt: skip
    print(f"{label:<20}{produced:>12,.0f} trades/s over {elapsed:.1f}s")
    print(f"consumer (analyzed) {(n1 - n0) / elapsed:>12,.0f} trades/s   lag at end {lag:,} msgs")
    print(f"latency recv->apply p50 {p50 * 1000 if p50 else float('nan'):.2f} ms   "
          f"p99 {p99 * 1000 if p99 else float('nan'):.2f} ms")  # fmt: skip
    cpu = pct(c0.user + c0.system, c1.user + c1.system)
    shares = "  ".join(
        f"{name} {pct(a, b):.0f}%"
        for name, a, b in zip(("simulator", "query"), s0, s1, strict=False)
    )
    print(f"cpu this process {cpu:.0f}%  broker {pct(j0, j1):.0f}%  {shares} (of a core)")
    print(f"drops               {pipe.drops.snapshot() or 'none'}")
    if lines:
        print(f"query process       {lines[-1][1].strip()}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    asyncio.run(main())
