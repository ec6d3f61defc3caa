"""A feed that pushes symbols nobody asked for, over a real websocket: every such trade is
dropped as `unsubscribed` (counted exactly), nothing of them is tracked, the status line keeps
coming and SIGTERM ends the process. The figures (RSS, status-line gaps, exit time) are measured
by `benchmarks/bench_flood.py`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import orjson
from websockets.asyncio.server import serve

from tests.helpers import headless_on_feed

CMD = [sys.executable, "-m", "stockup_tui"]


def flood_frames(symbols: int, per_frame: int, t0_ms: int) -> list[str]:
    """`symbols` never-subscribed symbols, one trade each, `per_frame` trades per frame."""
    frames = []
    for start in range(0, symbols, per_frame):
        data = [
            {"s": f"Z{i:06d}", "p": 10.0, "t": t0_ms, "v": 1, "c": None}
            for i in range(start, min(symbols, start + per_frame))
        ]
        frames.append(orjson.dumps({"type": "trade", "data": data}).decode())
    return frames


async def test_unsubscribed_symbols_are_counted_drops_not_state() -> None:
    symbols = 20_000
    sent = asyncio.Event()

    async def handler(ws) -> None:
        await ws.recv()  # the subscription to AAPL
        now = int(time.time() * 1000)
        for frame in flood_frames(symbols, 500, now):
            await ws.send(frame)
        aapl = {"type": "trade", "data": [{"s": "AAPL", "p": 190.0, "t": now, "v": 5, "c": None}]}
        await ws.send(orjson.dumps(aapl).decode())
        sent.set()
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await headless_on_feed(port)
        try:
            assert proc.stdout is not None
            line = b""
            while not re.search(rb"unsubscribed=20000\b", line):
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert line, "the process ended"
            assert sent.is_set()
            # The one subscribed symbol is the only one tracked; its trade went through.
            while b" 1 sym total 1 " not in line:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert line, "the process ended"
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"stopped cleanly" in out


def test_an_analyzer_tracks_at_most_max_symbols(tmp_path) -> None:
    """A replay is not filtered (the recording decides), so its 500 symbols reach the analyzer,
    which keeps 100 (the bound, one partition on the memory bus) and counts the rest."""
    t0 = 1_764_085_200_000
    rec = tmp_path / "flood.jsonl"
    with rec.open("wb") as fh:
        for k, frame in enumerate(flood_frames(500, 50, t0)):
            fh.write(orjson.dumps({"r": t0 / 1000 + k * 0.01, "f": frame}) + b"\n")
    out = tmp_path / "metrics.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    proc = subprocess.run(
        [*CMD, "--headless", "--replay", str(rec), "--metrics-out", str(out),
         "--set", "max_symbols=100"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    final = [line for line in proc.stdout.splitlines() if " stopped " in line][-1]
    assert "too_many_symbols=400" in final, final
    symbols = {orjson.loads(line)["symbol"] for line in out.read_bytes().splitlines()}
    assert symbols == {f"Z{i:06d}" for i in range(100)}
