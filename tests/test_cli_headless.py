"""The installed command as a user runs it: `--headless` in a real process, signals, exit codes,
and `simulate` serving another client over a real socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.test_pipeline import make_recording

CMD = [sys.executable, "-m", "stockup_tui"]


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [*CMD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 20.0) -> list[str]:
    """Reads stdout lines until one contains `needle`."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    raise AssertionError(f"{needle!r} not seen; stdout: {lines}; stderr: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_headless_streams_then_drains_on_signal(sig: signal.Signals) -> None:
    proc = spawn("--headless", "--status-interval", "0.3", "--rate", "2000", "--symbols", "AAPL")
    try:
        lines = read_until(proc, "analyzer")
        # Wait for a status line that shows trades flowing through the analyzer.
        while "total 0 " in lines[-1] or "analyzer" not in lines[-1]:
            lines += read_until(proc, "analyzer")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped cleanly" in out
    assert "Traceback" not in err


def test_headless_replay_ends_by_itself(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    make_recording(rec)
    out_file = tmp_path / "metrics.jsonl"
    proc = subprocess.run(
        [*CMD, "--headless", "--replay", str(rec), "--metrics-out", str(out_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stopped cleanly" in proc.stdout
    rows = [orjson.loads(line) for line in out_file.read_bytes().splitlines()]
    assert rows and {"symbol", "ts_ms", "windows"} <= set(rows[0])


def test_bad_configuration_exits_nonzero_naming_the_key() -> None:
    proc = subprocess.run(
        [*CMD, "--headless", "--set", "source.watchdog=often"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "source.watchdog" in proc.stderr
    missing = subprocess.run(
        [*CMD, "--headless", "--source", "finnhub"], capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2 and "source.token" in missing.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_simulate_command_serves_other_programs() -> None:
    port = free_port()
    proc = spawn("simulate", "--port", str(port), "--rate", "500")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                ws = await connect(f"ws://127.0.0.1:{port}")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
        async with ws:
            await ws.send('{"type":"subscribe","symbol":"IBM"}')
            while True:
                msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] == "trade":
                    break
        assert {t["s"] for t in msg["data"]} == {"IBM"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
