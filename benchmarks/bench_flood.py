"""A feed that floods never-subscribed symbols: what the headless process costs meanwhile.

    python benchmarks/bench_flood.py --symbols 100000 --per-frame 1 --status-interval 1

A websocket server (this script) sends `--symbols` distinct symbols, one trade each, while the
process is subscribed to AAPL only (and gets an AAPL trade every 50 ms). `stockup-tui --headless`
runs as a separate process, as a user would start it. Printed: the peak RSS of that process
(VmHWM), the largest gap between two status lines against the configured interval, the drops
it reports, and the seconds from SIGTERM to its exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from itertools import pairwise

import orjson
from bench_pipeline import ROOT
from websockets.asyncio.server import serve


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--symbols", type=int, default=100_000)
    ap.add_argument("--per-frame", type=int, default=1, help="trades per websocket frame")
    ap.add_argument("--status-interval", type=float, default=1.0)
    args = ap.parse_args()
    flood_done = asyncio.Event()

    async def handler(ws) -> None:
        await ws.recv()  # the subscription

        async def aapl() -> None:
            while True:
                now = int(time.time() * 1000)
                trade = {"s": "AAPL", "p": 190.0, "t": now, "v": 1, "c": None}
                await ws.send(orjson.dumps({"type": "trade", "data": [trade]}).decode())
                await asyncio.sleep(0.05)

        ticker = asyncio.create_task(aapl())
        n, per = args.symbols, args.per_frame
        for start in range(0, n, per):
            now = int(time.time() * 1000)
            data = [
                {"s": f"Z{i:07d}", "p": 10.0, "t": now, "v": 1, "c": None}
                for i in range(start, min(n, start + per))
            ]
            await ws.send(orjson.dumps({"type": "trade", "data": data}).decode())
        flood_done.set()
        try:
            await ws.wait_closed()
        finally:
            ticker.cancel()

    async with serve(handler, "127.0.0.1", 0, max_queue=None) as server:
        port = server.sockets[0].getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
        env["PYTHONUNBUFFERED"] = "1"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stockup_tui", "--headless", "--source", "finnhub",
            "--url", f"ws://127.0.0.1:{port}", "--symbols", "AAPL",
            "--status-interval", str(args.status_interval),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        started = time.monotonic()
        stamps: list[float] = []
        last = ""
        want = re.compile(rf"unsubscribed={args.symbols}\b")
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 600)
            if not raw:
                raise SystemExit("the process ended early")
            line = raw.decode()
            if " src " in line:
                stamps.append(time.monotonic())
                last = line
            if want.search(line):
                break
        flood_s = time.monotonic() - started
        for _ in range(3):  # a few more lines after the flood
            await asyncio.wait_for(proc.stdout.readline(), 60)
            stamps.append(time.monotonic())
        rss = peak_rss_mib(proc.pid)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
        exit_s = time.monotonic() - sent
    gaps = [b - a for a, b in pairwise(stamps)]
    print(f"flood: {args.symbols:,} unsubscribed symbols, {args.per_frame} per frame")
    print(f"all counted after {flood_s:.1f} s; last status line before that:\n  {last.strip()}")
    print(f"peak RSS {rss:.1f} MiB")
    print(
        f"status lines: {len(stamps)}, largest gap {max(gaps, default=0):.2f} s "
        f"(interval {args.status_interval:g} s)"
    )
    print(f"exit {exit_s:.2f} s after SIGTERM, code {proc.returncode}")


if __name__ == "__main__":
    asyncio.run(main())
