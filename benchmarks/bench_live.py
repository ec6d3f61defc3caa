"""What a live feed costs: CPU-seconds per million trades of each process at a live pace, and
what a trade costs on the Kafka topic, for every bus.

    python benchmarks/bench_live.py                          # 3,000 and 10,000 trades/s, all buses
    python benchmarks/bench_live.py --rates 3000 --buses kafka --seconds 30

The feed is `stockup-tui simulate` in its own process, paced at the rate given, 50 symbols by
default. Each bus runs as users run it, with the default settings: the memory bus in one
`--headless` process (role all); Kafka and RabbitMQ as a `--role query` process and a `--role
analyzer` process. After `--warmup` seconds the CPU time of each process is read, again after
`--seconds`: the difference over the trades offered meanwhile (rate x seconds) is the cost per
million trades (the feed keeps the pace: the end of the run checks the topic held them).

For Kafka the trades topic is then read back whole with the project's codec: records, payload
bytes (key + value) and trades, so bytes per trade and trades per record are exact; the
broker's log files for the topic (record-batch headers included) are given beside them when
the broker of scripts/kafka.sh runs here. Every run uses its own topics, group, exchange and
queue, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
from bench_pipeline import ROOT, free_port, start_simulator, wait_port
from bench_rabbitmq import PASSWORD
from bench_rabbitmq import delete as delete_rabbitmq

from stockup_tui.engine.codec import CodecError, decode_record
from stockup_tui.engine.model import SymbolBatch

KAFKA_DATA = ROOT / ".services" / "kafka" / "data"


@dataclass
class Result:
    bus: str
    rate: float
    cpu_per_m: dict[str, float]  # process role -> CPU-seconds per million trades
    records: int = 0
    trades: int = 0
    payload_bytes: int = 0
    log_bytes: int = 0


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def bus_env(bus: str, tag: str) -> dict[str, str]:
    """The environment that gives a run its own topics/queues (and the bus)."""
    env = {"STOCKUP_BUS__KIND": bus}
    if bus == "kafka":
        for key in ("topic", "metrics_topic", "control_topic", "status_topic"):
            env[f"STOCKUP_KAFKA__{key.upper()}"] = f"live.{tag}.{key}"
        env["STOCKUP_KAFKA__DEAD_LETTER_TOPIC"] = f"live.{tag}.dlq"
        env["STOCKUP_KAFKA__GROUP_ID"] = f"live.{tag}"
    elif bus == "rabbitmq":
        env |= rabbitmq_env(tag)
    return env


def rabbitmq_section(tag: str) -> dict[str, str]:
    return {
        "host": "127.0.0.1",
        "vhost": "stocks",
        "username": "stockup",
        "exchange": f"live.{tag}",
        "queue": f"live.{tag}",
        "dead_letter_exchange": f"live.{tag}.dlx",
        "dead_letter_queue": f"live.{tag}.dlq",
        "checkpoint": f"/tmp/stockup-live-{tag}.json",
    }


def rabbitmq_env(tag: str) -> dict[str, str]:
    env = {f"STOCKUP_RABBITMQ__{k.upper()}": v for k, v in rabbitmq_section(tag).items()}
    env["STOCKUP_RABBITMQ__PASSWORD"] = PASSWORD
    return env


def read_topic(bootstrap: str, topic: str) -> tuple[int, int, int]:
    """(records, payload bytes, trades) of a whole topic, decoded with the project's codec."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records = size = trades = 0
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=500, max_records=10_000).values():
                for rec in recs:
                    records += 1
                    size += len(rec.key or b"") + len(rec.value or b"")
                    try:
                        record = decode_record(rec.value)
                    except CodecError:
                        continue
                    if type(record) is SymbolBatch:
                        trades += len(record)
                    elif type(record) is list:  # a group: one partition's flush
                        trades += sum(len(b) for b in record)
        return records, size, trades
    finally:
        consumer.close()


def delete_topics(bootstrap: str, tag: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"live.{tag}.")])
    finally:
        admin.close()


def log_bytes(topic: str) -> int:
    if not KAFKA_DATA.is_dir():
        return 0
    return sum(f.stat().st_size for d in KAFKA_DATA.glob(f"{topic}-*") for f in d.glob("*.log"))


async def run(args: argparse.Namespace, bus: str, rate: float) -> Result:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    sim = start_simulator(port, rate, args.symbols, args.duplicates)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    env = clean | bus_env(bus, tag)
    if args.flush:
        env["STOCKUP_BUS__FLUSH_INTERVAL"] = args.flush
    symbols = ",".join(f"SYM{i:02d}" for i in range(args.symbols))
    base = [sys.executable, "-m", "stockup_tui", "--headless", "--symbols", symbols]
    base += ["--source", "finnhub", "--url", f"ws://127.0.0.1:{port}", "--log-level", "WARNING"]
    roles = ["all"] if bus == "memory" else ["analyzer", "query"]
    logs = Path(tempfile.mkdtemp())
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        await wait_port(port)
        for role in roles:
            procs[role] = subprocess.Popen(
                [*base, "--role", role],
                env=env,
                stdout=(logs / f"{role}.log").open("wb"),
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        await asyncio.sleep(args.warmup)
        ps = {role: psutil.Process(p.pid) for role, p in procs.items()}
        before = {role: cpu_seconds(p) for role, p in ps.items()}
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        after = {role: cpu_seconds(p) for role, p in ps.items()}
        elapsed = time.monotonic() - started
        for role, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{bus} {role} exited early; see {logs / (role + '.log')}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(60)
        sim.terminate()
        sim.wait(10)
    offered = rate * elapsed
    result = Result(bus, rate, {r: (after[r] - before[r]) / offered * 1e6 for r in procs})
    if bus == "kafka":
        bootstrap = "127.0.0.1:9092"
        topic = f"live.{tag}.topic"
        result.records, result.payload_bytes, result.trades = read_topic(bootstrap, topic)
        result.log_bytes = log_bytes(topic)
        delete_topics(bootstrap, tag)
    elif bus == "rabbitmq":
        delete_rabbitmq(rabbitmq_section(tag))
    return result


def show(r: Result) -> str:
    cpu = "  ".join(f"{role} {v:5.1f}" for role, v in sorted(r.cpu_per_m.items()))
    line = f"{r.bus:<9} {r.rate:>8,.0f}/s   CPU-s per M trades: {cpu}"
    if r.records:
        line += (
            f"   topic: {r.trades / r.records:.2f} trades/record,"
            f" {r.payload_bytes / r.trades:.0f} B/trade payload"
        )
        if r.log_bytes:
            line += f", {r.log_bytes / r.trades:.0f} B/trade on disk"
    return line


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rates", default="3000,10000", help="trades/s, comma separated")
    ap.add_argument("--buses", default="memory,kafka,rabbitmq")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--duplicates", type=float, default=0.02)
    ap.add_argument("--flush", help="bus.flush_interval (default: the app's)")
    args = ap.parse_args()
    for rate in (float(r) for r in args.rates.split(",")):
        for bus in args.buses.split(","):
            print(show(await run(args, bus, rate)), flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    asyncio.run(main())
