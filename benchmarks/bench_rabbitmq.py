"""End-to-end throughput and latency through a real RabbitMQ server, publisher confirms on:
simulator (own process) -> websocket -> parse + dedup -> RabbitMQ (stream queue) -> analyzer.

The pipeline runs here as `--headless --bus rabbitmq` runs it (role all: publisher and consumer,
each on its own connection); the simulator is `stockup-tui simulate` in a second process, as in
bench_pipeline.py (whose helpers this reuses). A private exchange and queue are declared and
deleted at the end. The server is the local one of scripts/rabbitmq.sh (password from
STOCKUP_RABBITMQ__PASSWORD, default the development one).

    python benchmarks/bench_rabbitmq.py --rate 200000 --seconds 15   # throughput
    python benchmarks/bench_rabbitmq.py --rate 10000 --seconds 15    # latency at 10k/s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import pika
import psutil
from bench_pipeline import free_port, start_simulator, wait_port

from stockup_tui.config import Settings
from stockup_tui.engine.bus.rabbitmq.bus import RabbitMQBus
from stockup_tui.engine.stats import RabbitFigures
from stockup_tui.engine.wiring import build_pipeline

PASSWORD = os.environ.get("STOCKUP_RABBITMQ__PASSWORD", "stockup-dev")


def broker_process() -> psutil.Process | None:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "beam.smp" and "rabbit" in " ".join(proc.info["cmdline"] or []):
            return proc
    return None


def cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def delete(section: dict[str, str]) -> None:
    params = pika.ConnectionParameters(
        host=section["host"],
        virtual_host=section["vhost"],
        credentials=pika.PlainCredentials(section["username"], PASSWORD),
    )
    conn = pika.BlockingConnection(params)
    for q in (section["queue"], section["dead_letter_queue"]):
        conn.channel().queue_delete(q)
    for x in (section["exchange"], section["dead_letter_exchange"]):
        conn.channel().exchange_delete(x)
    conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=200_000, help="simulator trades/s offered")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--windows", default="1m")
    ap.add_argument("--duplicates", type=float, default=0.02)
    ap.add_argument("--flush", help="bus.flush_interval (default: the app's)")
    ap.add_argument("--queue-type", default="stream", choices=["stream", "quorum", "classic"])
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    u = uuid.uuid4().hex[:8]
    section = {
        "host": args.host,
        "vhost": "stocks",
        "username": "stockup",
        "exchange": f"bench.{u}",
        "queue": f"bench.{u}",
        "queue_type": args.queue_type,
        "dead_letter_exchange": f"bench.{u}.dlx",
        "dead_letter_queue": f"bench.{u}.dlq",
        "checkpoint": f"/tmp/stockup-bench-{u}.json",
        "max_age": "1h",
    }
    port = free_port()
    sim = start_simulator(port, args.rate, args.symbols, args.duplicates)
    try:
        await wait_port(port)
        settings = Settings.model_validate(
            {
                "symbols": [f"SYM{i:02d}" for i in range(args.symbols)],
                "windows": args.windows,
                "source": {"kind": "finnhub", "url": f"ws://127.0.0.1:{port}"},
                "bus": {
                    "kind": "rabbitmq",
                    **({"flush_interval": args.flush} if args.flush else {}),
                },
                "rabbitmq": {**section, "password": PASSWORD},
            }
        )
        pipe = build_pipeline(settings, live_interval=1.0)
        bus = pipe.bus
        assert isinstance(bus, RabbitMQBus)
        await pipe.start()
        if not bus.stats.connected:
            raise SystemExit(f"RabbitMQ: {bus.stats.last_error}")
        pub, con = bus.publisher, bus.consumer
        assert pub is not None and con is not None
        me, other, broker = psutil.Process(), psutil.Process(sim.pid), broker_process()
        await asyncio.sleep(args.warmup)
        pipe.latency.reset()

        def sample() -> tuple[float, ...]:
            return (
                time.perf_counter(), pipe.parser.trades, pub.confirmed_trades, pub.confirmed,
                con.delivered, pipe.analyzer.ingested, cpu(me), cpu(other), cpu(broker),
            )  # fmt: skip

        s0 = sample()
        await asyncio.sleep(args.seconds)
        s1 = sample()
        p50, p99 = pipe.latency.overall()
        rabbit = bus.stats.detail
        await pipe.stop()
    finally:
        sim.terminate()
        sim.wait(10)
        try:
            delete(section)
        except Exception as exc:
            print(f"(cleanup failed: {exc})")
        if os.path.exists(section["checkpoint"]):
            os.unlink(section["checkpoint"])

    d = [b - a for a, b in zip(s0, s1, strict=True)]
    el = d[0]
    print(f"offered rate          {args.rate:>12,.0f} trades/s ({args.symbols} symbols, "
          f"{args.queue_type} queue, confirms on)")  # fmt: skip
    print(f"source (parsed)       {d[1] / el:>12,.0f} trades/s")
    print(f"published + confirmed {d[2] / el:>12,.0f} trades/s  ({d[3] / el:,.0f} messages/s)")
    print(f"consumed (analyzed)   {d[5] / el:>12,.0f} trades/s  ({d[4] / el:,.0f} messages/s)"
          f" over {el:.1f}s")  # fmt: skip
    print(f"latency recv->windows p50 {p50 * 1000 if p50 else float('nan'):.2f} ms   "
          f"p99 {p99 * 1000 if p99 else float('nan'):.2f} ms")  # fmt: skip
    confirms = rabbit.publisher if isinstance(rabbit, RabbitFigures) else None
    c50, c99 = (confirms.confirm_p50, confirms.confirm_p99) if confirms else (None, None)
    print(f"confirm latency       p50 {c50 * 1000 if c50 else float('nan'):.2f} ms   "
          f"p99 {c99 * 1000 if c99 else float('nan'):.2f} ms (last 2 s)")  # fmt: skip
    print(f"cpu pipeline {d[6] / el * 100:.0f}%  simulator {d[7] / el * 100:.0f}%  "
          f"rabbitmq {d[8] / el * 100:.0f}% of a core")  # fmt: skip
    print(f"drops                 {pipe.drops.snapshot() or 'none'}")


if __name__ == "__main__":
    asyncio.run(main())
