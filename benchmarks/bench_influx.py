"""The InfluxDB sink's costs: what `write()` costs the event loop, the line-protocol encoding on
the sink's thread, and how fast a backlog reaches a real server.

    python benchmarks/bench_influx.py                                   # InfluxDB 1.6, v1 /write
    python benchmarks/bench_influx.py --url http://127.0.0.1:8428       # victoria-metrics, v2

Emits `--snapshots` snapshots of 50 symbols x 2 windows as fast as it can (like a replay), then
waits until every point is written. The database it creates is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.parse
import urllib.request
import uuid

import psutil

from stockup_tui.config import InfluxConfig
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics
from stockup_tui.engine.sinks.influx.lines import WindowLines, window_point
from stockup_tui.engine.sinks.influx.sink import InfluxSink


def snapshots(n: int, start_ms: int) -> list[SymbolSnapshot]:
    out = []
    for i in range(n):
        sym = f"S{i % 50:02d}"
        ts = start_ms + (i // 50) * 1000
        p = 100.0 + (i % 977) * 0.013
        wins = tuple(
            WindowMetrics(
                w,
                120,
                3400.5,
                p - 0.5,
                p,
                p - 0.7,
                p + 0.4,
                p - 0.1,
                p - 0.09,
                0.5,
                0.5 / p * 100,
                120 / (w / 1000),
            )
            for w in (60_000, 300_000)
        )
        out.append(SymbolSnapshot(sym, ts, p, ts - 3, wins))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8086")
    ap.add_argument("--snapshots", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()

    snaps = snapshots(args.snapshots, (int(time.time()) - 3600) * 1000)
    enc = WindowLines()
    t = time.perf_counter()
    for s in snaps[:20_000]:
        enc.lines(s)
    ours = (time.perf_counter() - t) / 40_000
    t = time.perf_counter()
    for s in snaps[:2000]:
        window_point(s, 0).to_line_protocol()
        window_point(s, 1).to_line_protocol()
    ref = (time.perf_counter() - t) / 4000
    print(f"encoding: {ours * 1e6:.1f} us/point (influxdb-client Point: {ref * 1e6:.1f} us/point)")

    db = f"bench_{uuid.uuid4().hex[:8]}"
    cfg = InfluxConfig(
        enabled=True,
        url=args.url,
        bucket=f"{db}/{db}_rp",
        batch_size=args.batch,
        buffer_points=len(snaps) * 2,
        flush_interval=0.1,
        create="8086" in args.url,
    )
    drops = Drops()
    sink = InfluxSink(cfg, drops=drops, host="bench")
    sink.start()
    proc = psutil.Process()
    proc.cpu_percent(None)
    t0 = time.perf_counter()
    worst = 0.0
    for i in range(0, len(snaps), 50):  # one emit interval's worth per call, as the analyzer does
        t = time.perf_counter()
        sink.write(snaps[i : i + 50])
        worst = max(worst, time.perf_counter() - t)
        if i % 5000 == 0:
            await asyncio.sleep(0)
    fed = time.perf_counter() - t0
    points = len(snaps) * 2
    print(
        f"write(): {fed / len(snaps) * 1e6:.2f} us per snapshot on the caller's thread "
        f"(worst call of 50 snapshots: {worst * 1e3:.2f} ms)"
    )
    while sink.written < points and sink.state != "failed":
        await asyncio.sleep(0.05)
    took = time.perf_counter() - t0
    print(
        f"{points:,} points written in {took:.2f} s = {points / took:,.0f} points/s "
        f"via {sink.api} ({sink.server.version if sink.server else '?'}); "
        f"process CPU {proc.cpu_percent(None):.0f}% of a core; drops {drops.snapshot() or 0}"
    )
    await sink.close()
    if cfg.create:
        q = urllib.parse.urlencode({"q": f'DROP DATABASE "{db}"'}).encode()
        urllib.request.urlopen(f"{args.url}/query", q).read()


if __name__ == "__main__":
    asyncio.run(main())
