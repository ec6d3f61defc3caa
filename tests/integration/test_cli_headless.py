"""The installed command as a user runs it: `--headless` in a real process, signals, exit codes,
and `simulate` serving another client over a real socket."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.helpers import make_recording

CMD = [sys.executable, "-m", "stockup_tui"]


def spawn(*args: str, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    """The command in a process of its own; `ignore_sigint`: started as a shell starts
    `cmd &`, with SIGINT ignored (inherited SIG_IGN)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [*CMD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_ignore_sigint if ignore_sigint else None,
    )


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Its output once it exits; killed (never leaked) when it does not within `timeout`."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


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


@pytest.mark.parametrize(
    ("sig", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
)
def test_headless_streams_then_drains_on_signal(sig: signal.Signals, ignore_sigint: bool) -> None:
    proc = spawn(
        "--headless", "--status-interval", "0.3", "--rate", "2000", "--symbols", "AAPL",
        ignore_sigint=ignore_sigint,
    )  # fmt: skip
    try:
        lines = read_until(proc, "analyzer")
        # Wait for a status line that shows trades flowing through the analyzer.
        while "total 0 " in lines[-1] or "analyzer" not in lines[-1]:
            lines += read_until(proc, "analyzer")
        proc.send_signal(sig)
        out, err = finish(proc, 20)
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


@pytest.mark.parametrize("ignore_sigint", [False, True])
async def test_simulate_command_serves_other_programs(ignore_sigint: bool) -> None:
    port = free_port()
    proc = spawn("simulate", "--port", str(port), "--rate", "500", ignore_sigint=ignore_sigint)
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
        _, err = finish(proc, 10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# A Kafka broker nobody answers at: what quitting does when the bus cannot take the trades.
NO_BROKER = ["--bus", "kafka", "--set", "kafka.bootstrap_servers=127.0.0.1:1"]


def start_unsendable(*extra: str) -> subprocess.Popen[str]:
    proc = spawn(
        "--headless", *NO_BROKER, "--status-interval", "0.3", "--rate", "500", "--symbols",
        "AAPL", *extra,
    )  # fmt: skip
    lines = read_until(proc, "bus kafka DOWN")
    while "tr/s" not in lines[-1] or " 0 tr/s reconnects" in lines[-1]:
        lines += read_until(proc, "bus kafka DOWN")  # trades are waiting for the broker
    return proc


def test_quitting_says_what_it_waits_for_and_a_second_signal_abandons() -> None:
    proc = start_unsendable()
    try:
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "Ctrl+C again to abandon")
        proc.send_signal(signal.SIGTERM)
        # At once (within 10 s), whatever the threads stuck on the broker are doing: the
        # drain itself would wait 15 s for the broker.
        _, err = finish(proc, 10)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert re.search(r"abandoned while sending [\d,]+ trades to Kafka: that data is lost", err)
    assert "Traceback" not in err


def test_quitting_gives_up_after_stop_timeout() -> None:
    proc = start_unsendable("--set", "stop_timeout=2s")
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc, 30)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert re.search(r"gave up after 2s while sending [\d,]+ trades to Kafka", err)
    assert "stopping: sending" in out
    assert "Traceback" not in err


def test_a_stop_that_lost_trades_exits_with_code_3() -> None:
    """The bus gives up on the broker (15 s) before `stop_timeout`: the pipeline stops, counts
    the trades it could not send, says so and exits with 3."""
    proc = start_unsendable()
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc, 60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    lost = re.search(r"stopped, but lost at exit: bus_unsent_at_exit ([\d,]+)", err)
    assert lost, err
    final = [line for line in out.splitlines() if " stopped " in line][-1]
    assert f"bus_unsent_at_exit={lost.group(1).replace(',', '')}" in final
    assert "stopped cleanly" not in out and "Traceback" not in err
