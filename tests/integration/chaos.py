"""Shared by the chaos tests: a seeded recording, its offline computation, and the processes.

The recording is what a rough live feed gives: several symbols, trades a little behind their
receive time (some by more than the lateness), duplicates resent within a second, a few absurd
timestamps (1970, an hour ahead), a few bad frames. The offline computation plays it through
the in-process bus: the output is a function of the log, so every analyzer of a cluster that
reads the same recording through Kafka or RabbitMQ must emit exactly those snapshots, however
it is killed, frozen or restarted on the way.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from msgspec.json import encode as json_encode

from stockup_tui.config import Settings
from stockup_tui.engine.sources.recording import FrameRecorder
from stockup_tui.engine.wiring import build_pipeline
from tests.helpers import ListSink

CMD = [sys.executable, "-m", "stockup_tui"]
SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "META", "AMZN", "GOOGL", "AMD", "INTC", "NFLX"]

Key = tuple[str, int]


def write_recording(path: Path, seed: int, seconds: int = 240, rate: float = 30.0) -> int:
    """`seconds` of recorded feed at about `rate` trades/s; returns the frames written."""
    rng = random.Random(seed)
    rec = FrameRecorder(path)
    prices = {s: 50.0 + 40 * i for i, s in enumerate(SYMBOLS)}
    start = 1_764_000_000_000
    frames = 0
    step = 50  # ms between frames
    resend: list[dict[str, Any]] = []
    for k in range(seconds * 1000 // step):
        recv = start + k * step
        data = resend
        resend = []
        for _ in range(rng.randint(0, max(1, round(2 * rate * step / 1000)))):
            sym = rng.choice(SYMBOLS)
            prices[sym] = max(0.01, round(prices[sym] * (1 + rng.gauss(0, 5e-4)), 2))
            lag = rng.choice((0, 5, 20, 80, 300, 900)) if rng.random() > 0.02 else 3_500
            t = recv - lag
            if rng.random() < 0.001:
                t = rng.choice((1, recv + 3_600_000))  # a broken clock: one counted drop
            trade = {"s": sym, "p": prices[sym], "t": t, "v": rng.randint(1, 900), "c": None}
            data.append(trade)
            if rng.random() < 0.03:
                resend.append(dict(trade))  # the feed sends it again in the next frame
        rec.write(orjson.dumps({"type": "trade", "data": data}).decode(), recv / 1000)
        frames += 1
        if k % 400 == 17:
            rec.write('{"type":"trade","data":[{"s":"AAPL","p":"x","t":1,"v":1}]}', recv / 1000)
            rec.write("{not json", recv / 1000)
    rec.close()
    return frames


async def offline(path: Path, windows: list[str]) -> dict[Key, dict[str, Any]]:
    """The snapshots of the recording, computed in-process (the memory bus): the oracle."""
    sink = ListSink()
    s = Settings.model_validate(
        {"windows": windows, "symbols": SYMBOLS, "source": {"kind": "replay", "replay": path}}
    )
    pipe = build_pipeline(s, sinks=[sink])
    await pipe.start()
    await pipe.wait_source_done()
    await pipe.stop()
    out: dict[Key, dict[str, Any]] = {}
    for snap in sink.snapshots:
        key = (snap.symbol, snap.ts_ms)
        assert key not in out, f"emitted twice in one uninterrupted run: {key}"
        out[key] = orjson.loads(json_encode(snap))
    return out


def rows(path: Path) -> list[dict[str, Any]]:
    """The snapshots a process wrote (a line cut by `kill -9` is left out)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def compare(
    want: dict[Key, dict[str, Any]], outputs: list[Path]
) -> tuple[list[tuple[Key, dict, dict | None]], set[Key]]:
    """(snapshots that differ from the oracle, oracle keys nobody emitted)."""
    wrong = []
    seen: set[Key] = set()
    for out in outputs:
        for row in rows(out):
            key = (row["symbol"], row["ts_ms"])
            seen.add(key)
            if row != want.get(key):
                wrong.append((key, row, want.get(key)))
    return wrong, set(want) - seen


class Procs:
    """The stockup-tui processes of a test, each with its own log file; all stopped at the end."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.env = env or {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with self.log(name).open("ab") as fh:
            proc = subprocess.Popen(
                [*CMD, "--headless", *args], stdout=fh, stderr=subprocess.STDOUT, env=self.env
            )
        self.procs[name] = proc
        self.started[name] = time.monotonic()
        return proc

    def text(self, name: str) -> str:
        path = self.log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(60)

    def stop_all(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(10)
        return codes
