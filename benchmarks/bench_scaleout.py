"""Scale-out: one against two `--role analyzer` processes sharing a Kafka topic.

    python benchmarks/bench_scaleout.py                       # 1 and 2 analyzers, 6M trades
    python benchmarks/bench_scaleout.py --analyzers 1,2,3 --trades 5000000

The topic is filled first, as the query role writes it (one group record per partition per
flush of `--flush` trades over 50 symbols, routed by the default partitioner, and a watermark
record in every partition each second of event time), so the analyzers alone are measured:
each run starts K `stockup-tui --headless --role analyzer` processes in a new consumer group
and reads their status records (`kafka.status_topic`, every 0.5 s). Once the group is settled
(every partition owned, every process emitting), the CPU time of each process and the
snapshots emitted so far are noted; when the snapshots reach the number the same records give
in one in-process `Analyzer` (the output is a function of the log), again. The market's pace
is even, so snapshots measure progress: trades/s is the trades behind the snapshots emitted in
between over the time it took (wall clock); CPU-seconds per million trades sums the processes.
Each run uses its own topics and group, deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from bench_analyzer import make_batches
from bench_live import cpu_seconds
from bench_pipeline import ROOT
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

from stockup_tui.config import Settings
from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.bus.kafka.common import ensure_topics
from stockup_tui.engine.cluster import parse_status
from stockup_tui.engine.codec import GROUP_KEY, WATERMARK_KEY, encode_group, encode_watermark
from stockup_tui.engine.model import SymbolBatch, Watermark

BOOTSTRAP = "127.0.0.1:9092"
PARTITIONS = 6  # kafka.partitions' default


def kafka_section(tag: str) -> dict[str, str]:
    return {
        "topic": f"scale.{tag}.trades",
        "metrics_topic": f"scale.{tag}.metrics",
        "control_topic": f"scale.{tag}.control",
        "status_topic": f"scale.{tag}.status",
        "dead_letter_topic": f"scale.{tag}.dlq",
        "group_id": f"scale.{tag}",
        "status_interval": "500ms",
    }


def delete_topics(tag: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(f"scale.{tag}.")])
    finally:
        admin.close()


def expected_snapshots(records: list[SymbolBatch | Watermark], windows_ms: list[int]) -> int:
    analyzer = Analyzer(windows_ms, emit_interval_ms=1000)
    n = 0
    for rec in records:
        if type(rec) is SymbolBatch:
            n += len(analyzer.trades(rec))
        else:
            n += len(analyzer.watermark(rec.wm_ms))
    return n


def fill(tag: str, trades: int, flush: int, symbols: int) -> tuple[int, int]:
    """Writes the trades as the query role would; returns (trades, snapshots) they make."""
    settings = Settings.model_validate({"bus": {"kind": "kafka"}, "kafka": kafka_section(tag)})
    ensure_topics(settings.kafka)
    records = list(make_batches(symbols, 3000.0, trades, max(1, flush // symbols)))
    snapshots = expected_snapshots(records, settings.windows_ms)
    route = {}
    producer = KafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=20, batch_size=1 << 20, acks="all"
    )
    topic = settings.kafka.topic
    written = seq = 0

    def send_flush(flush_batches: list[SymbolBatch]) -> None:
        nonlocal written, seq
        parts: dict[int, list[SymbolBatch]] = {}
        for b in flush_batches:
            part = route.get(b.symbol)
            if part is None:
                part = route[b.symbol] = (murmur2(b.symbol.encode()) & 0x7FFFFFFF) % PARTITIONS
            parts.setdefault(part, []).append(b)
        for part, group in parts.items():
            seq += 1
            producer.send(topic, encode_group(group, "bench", seq), GROUP_KEY, partition=part)
            written += 1

    pending: list[SymbolBatch] = []
    seen: set[str] = set()
    for rec in records:
        if type(rec) is Watermark:
            send_flush(pending)
            pending, seen = [], set()
            for part in range(PARTITIONS):
                producer.send(topic, encode_watermark(rec), WATERMARK_KEY, partition=part)
                written += 1
            continue
        assert type(rec) is SymbolBatch
        if rec.symbol in seen:  # the next flush of the query role
            send_flush(pending)
            pending, seen = [], set()
        rec.c = [None] * len(rec.t)
        rec.recv = [(rec.t[-1] / 1000, len(rec.t))]  # received as the last trade was made
        pending.append(rec)
        seen.add(rec.symbol)
    send_flush(pending)
    producer.flush()
    producer.close()
    return sum(len(r.t) for r in records if type(r) is SymbolBatch), snapshots


def run(tag: str, analyzers: int, total_trades: int, total_snaps: int, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    env["STOCKUP_BUS__KIND"] = "kafka"
    for key, value in kafka_section(tag).items():
        env[f"STOCKUP_KAFKA__{key.upper()}"] = value
    env["STOCKUP_KAFKA__GROUP_ID"] = f"scale.{tag}.{analyzers}"
    logs = Path(tempfile.mkdtemp())
    status = KafkaConsumer(
        kafka_section(tag)["status_topic"], bootstrap_servers=BOOTSTRAP, auto_offset_reset="latest"
    )
    status.poll(timeout_ms=500)  # assigned before the analyzers write
    cmd = [sys.executable, "-m", "stockup_tui", "--headless", "--role", "analyzer"]
    cmd += ["--log-level", "WARNING", "--status-interval", "60s"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=(logs / f"a{i}.log").open("wb"), stderr=-2, cwd=ROOT)
        for i in range(analyzers)
    ]
    pids = {p.pid for p in procs}
    latest: dict[int, object] = {}
    start = end = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for recs in status.poll(timeout_ms=200).values():
                for rec in recs:
                    st = parse_status(rec.value)
                    if st.identity.pid in pids and st.identity.role == "analyzer":
                        latest[st.identity.pid] = st
            if len(latest) < analyzers:
                continue
            owned = sorted(lag.partition for st in latest.values() for lag in st.lag)
            snaps = sum(st.snapshots for st in latest.values())
            if start is None and owned == list(range(PARTITIONS)):
                if all(st.snapshots for st in latest.values()):
                    if snaps > total_snaps * 2 // 3:
                        raise SystemExit("the group settled too late: give it more --trades")
                    cpu0 = sum(cpu_seconds(psutil.Process(pid)) for pid in pids)
                    start = (time.monotonic(), snaps)
            elif start is not None and snaps >= total_snaps:
                cpu1 = sum(cpu_seconds(psutil.Process(pid)) for pid in pids)
                end = time.monotonic()
                break
        else:
            raise SystemExit(f"no end within {timeout:.0f}s; logs in {logs}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        status.close()
    assert start is not None and end is not None
    t0, snaps0 = start
    trades = (total_snaps - snaps0) * total_trades / total_snaps  # emitted from t0 on
    elapsed = end - t0
    return (
        f"{analyzers} analyzer(s): {trades / elapsed:>9,.0f} trades/s over {elapsed:.1f}s "
        f"({trades:,.0f} trades after the group settled); "
        f"CPU {(cpu1 - cpu0) / trades * 1e6:.2f} CPU-s per M trades in all, "
        f"{(cpu1 - cpu0) / elapsed * 100:.0f}% of a core"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyzers", default="1,2", help="process counts, comma separated")
    ap.add_argument("--trades", type=int, default=6_000_000)
    ap.add_argument("--flush", type=int, default=2000, help="trades per query flush")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    try:
        t = time.monotonic()
        trades, snaps = fill(tag, args.trades, args.flush, args.symbols)
        took = time.monotonic() - t
        print(f"topic filled: {trades:,} trades that make {snaps:,} snapshots ({took:.0f}s)")
        for k in (int(x) for x in args.analyzers.split(",")):
            print(run(tag, k, trades, snaps, args.timeout), flush=True)
    finally:
        delete_topics(tag)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
