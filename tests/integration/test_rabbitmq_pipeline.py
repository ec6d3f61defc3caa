"""Query and analyzer as separate processes over the real RabbitMQ server: an analyzer killed with
SIGKILL mid-stream and restarted emits what an uninterrupted run emits (stream replay from its
checkpoint), and wrong credentials give one clear error without a crash loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from msgspec.json import encode as json_encode

from stockup_tui.config import Settings
from stockup_tui.engine.pipeline import Pipeline
from stockup_tui.engine.sources.recording import FrameRecorder
from stockup_tui.engine.wiring import build_pipeline
from tests.helpers import ListSink, make_recording, wait_until
from tests.integration import rabbitmq_helpers as rmq
from tests.services import RABBITMQ_PASSWORD, require_rabbitmq

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

CMD = [sys.executable, "-m", "stockup_tui"]
WINDOWS = "1m"


def env(password: str = RABBITMQ_PASSWORD) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    out["STOCKUP_RABBITMQ__PASSWORD"] = password
    return out


def spawn(args: list[str], log: Path, password: str = RABBITMQ_PASSWORD) -> subprocess.Popen:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [*CMD, "--headless", "--bus", "rabbitmq", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env(password),
        )


def analyzer_args(section: dict[str, Any], out: Path) -> list[str]:
    return [
        "--role", "analyzer", "--windows", WINDOWS, "--metrics-out", str(out),
        "--status-interval", "1s", *rmq.as_flags(section),
    ]  # fmt: skip


def rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data.splitlines() if line.endswith(b"}")]


def same(a: Any, b: Any) -> bool:
    """The very same snapshot, to the last bit: the output is a function of the log."""
    return a == b


def keyed(items: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["symbol"], r["ts_ms"]): r for r in items}


async def reference(rec: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Snapshots of an uninterrupted run of the same recording (in-process, memory bus)."""
    sink = ListSink()
    s = Settings.model_validate({"windows": [WINDOWS], "source": {"kind": "replay", "replay": rec}})
    pipe = build_pipeline(s, sinks=[sink])
    await pipe.start()
    await pipe.wait_source_done()
    await pipe.stop()
    return keyed([orjson.loads(json_encode(snap)) for snap in sink.snapshots])


def last_keys(ref: dict[tuple[str, int], dict[str, Any]]) -> set[tuple[str, int]]:
    last: dict[str, int] = {}
    for sym, ts in ref:
        last[sym] = max(ts, last.get(sym, ts))
    return set(last.items())


def stop(proc: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_analyzer_killed_mid_stream_then_restarted_emits_the_uninterrupted_metrics(
    tmp_path: Path,
) -> None:
    require_rabbitmq()
    section = rmq.names("stream", tmp_path)
    rec = tmp_path / "rec.jsonl"
    make_recording(rec, seed=21, frames=2400)  # ~8 minutes of event time, three symbols
    ref = await reference(rec)
    assert len(ref) > 600
    out1, out2, log = tmp_path / "out1.jsonl", tmp_path / "out2.jsonl", tmp_path / "procs.log"
    procs: list[subprocess.Popen] = []
    try:
        first = spawn(analyzer_args(section, out1), log)
        procs.append(first)
        await wait_until(
            lambda: "RabbitMQ consumer: connected" in log.read_text(errors="replace"),
            30,
            "the first analyzer attached",
        )
        query = spawn(
            ["--role", "query", "--replay", str(rec), "--replay-speed", "60",
             *rmq.as_flags(section)],
            log,
        )  # fmt: skip
        procs.append(query)
        # Kill it hard in the middle: no drain, no final checkpoint.
        await wait_until(lambda: len(rows(out1)) >= len(ref) // 3, 60, "a third of the output")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = len(rows(out1))
        assert killed_at < len(ref)  # it really was mid-stream
        second = spawn(analyzer_args(section, out2), log)
        procs.append(second)
        await wait_until(lambda: query.poll() is not None, 60, "the query process to finish")
        assert query.returncode == 0
        want = last_keys(ref)
        await wait_until(lambda: want <= set(keyed(rows(out2))), 60, "the last snapshots")
        assert stop(second) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        rmq.delete_all(section)
    text = log.read_text(errors="replace")
    after = keyed(rows(out2))
    before = keyed(rows(out1))
    # The restarted analyzer emits exactly what the uninterrupted run emitted, from its very
    # first snapshot: its windows were rebuilt from the stream before it emitted anything.
    wrong = {k: (v, ref.get(k)) for k, v in after.items() if not same(v, ref.get(k))}
    assert not wrong, f"{len(wrong)} snapshots differ, e.g. {next(iter(wrong.items()))}"
    assert all(same(v, ref.get(k)) for k, v in before.items())
    missing = set(ref) - set(after) - set(before)
    assert not missing, f"never emitted: {sorted(missing)[:5]}"
    assert "checkpoint" in text and "replay done" in text
    assert "Traceback" not in text


async def test_wrong_password_headless_clear_error_once_and_no_crash_loop(tmp_path: Path) -> None:
    require_rabbitmq()
    section = rmq.names("stream", tmp_path)
    secret = "definitely-wrong-pw"
    log = tmp_path / "out.log"
    proc = spawn(
        ["--role", "analyzer", "--status-interval", "0.3s", *rmq.as_flags(section)],
        log,
        password=secret,
    )
    try:
        # Keeps running and reporting: wait for ten status lines (about three seconds, several
        # reconnection attempts with backoff).
        await wait_until(
            lambda: log.read_text(errors="replace").count(" | bus rabbitmq ") >= 10,
            30,
            "ten status lines",
        )
        assert proc.poll() is None  # no crash
        code = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        rmq.delete_all(section)
    text = log.read_text(errors="replace")
    assert code == 0 and "stopped cleanly" in text
    error = (
        "RabbitMQ refused the login for user 'stockup' on vhost 'stocks' "
        "(check rabbitmq.username / STOCKUP_RABBITMQ__PASSWORD)"
    )
    logged = [line for line in text.splitlines() if error in line and " WARNING " in line]
    assert len(logged) == 1, text[-3000:]  # logged once per state change, not per attempt
    status = [line for line in text.splitlines() if " | bus rabbitmq DOWN " in line]
    assert len(status) >= 10 and error in status[-1]  # and on the status line once known
    assert secret not in text
    assert "Traceback" not in text


def test_process_helpers_parse_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"symbol":"A","ts_ms":1}\n{"symbol":"A","ts')
    assert rows(path) == [{"symbol": "A", "ts_ms": 1}]


def quiet_symbol_recordings(tmp_path: Path) -> tuple[Path, Path, Path]:
    """AAA trades every 250 ms for 300 s; QQQ only at 140 s and 165 s. Split at 250 s: the
    analyzer restarts there, so its replay (the last 91 s: 159-250 s) holds QQQ's second trade
    but not its first, and QQQ's windows after the restart are only partly rebuilt."""
    t0 = 1_764_000_000_000
    parts = [tmp_path / "r1.jsonl", tmp_path / "r2.jsonl", tmp_path / "all.jsonl"]
    recs = [FrameRecorder(p) for p in parts]
    for i in range(1200):
        t = t0 + i * 250
        data = [{"s": "AAA", "p": 10.0 + (i % 7) * 0.01, "t": t, "v": 1 + i % 5, "c": None}]
        if i in (560, 660):  # 140 s and 165 s
            data.append({"s": "QQQ", "p": 50.0 + i / 100, "t": t, "v": 3, "c": None})
        frame = orjson.dumps({"type": "trade", "data": data}).decode()
        recs[0 if i < 1000 else 1].write(frame, (t + 30) / 1000)
        recs[2].write(frame, (t + 30) / 1000)
    for r in recs:
        r.close()
    return parts[0], parts[1], parts[2]


async def _publish(section: dict[str, Any], rec: Path) -> None:
    s = Settings.model_validate(
        {"role": "query", "bus": {"kind": "rabbitmq", "max_batch": 8}, "rabbitmq": section,
         "source": {"kind": "replay", "replay": rec}}  # about 8 trades (2 s) per message
    )  # fmt: skip
    pipe = build_pipeline(s)
    await pipe.start()
    await pipe.wait_source_done()
    await pipe.stop()
    assert pipe.bus.stats.published_messages > 0


def _analyzer(section: dict[str, Any], sink: ListSink) -> Pipeline:
    s = Settings.model_validate(
        {"role": "analyzer", "windows": [WINDOWS], "bus": {"kind": "rabbitmq"},
         "rabbitmq": section}
    )  # fmt: skip
    return build_pipeline(s, sinks=[sink], live_interval=0.05)


async def test_restart_does_not_emit_again_from_partly_rebuilt_quiet_windows(
    tmp_path: Path,
) -> None:
    require_rabbitmq()
    section = rmq.names("stream", tmp_path)
    section["prefetch"] = 2  # one message per delivery: a checkpoint after every message
    r1, r2, _ = quiet_symbol_recordings(tmp_path)
    t0 = 1_764_000_000_000
    first_sink, second_sink, ref_sink = ListSink(), ListSink(), ListSink()
    # The reference: an analyzer that reads the same stream without a stop (its own checkpoint).
    uninterrupted = _analyzer({**section, "checkpoint": section["checkpoint"] + ".ref"}, ref_sink)
    await uninterrupted.start()
    try:
        first = _analyzer(section, first_sink)
        await first.start()
        await _publish(section, r1)
        # The watermarks have slid QQQ's quiet windows until they emptied (225 s: one empty
        # snapshot, then none), and the end of the first replay closed AAA's at 250 s.
        want = {("QQQ", t0 + 225_000), ("AAA", t0 + 250_000)}
        await wait_until(
            lambda: want <= {(s.symbol, s.ts_ms) for s in first_sink.snapshots},
            30,
            "QQQ and AAA emitted up to 247 s",
        )
        await first.stop()
        second = _analyzer(section, second_sink)
        await second.start()
        await _publish(section, r2)
        await wait_until(
            lambda: ("AAA", t0 + 300_000) in {(s.symbol, s.ts_ms) for s in second_sink.snapshots},
            30,
            "AAA up to 300 s",
        )
        await second.stop()
        await wait_until(
            lambda: ("AAA", t0 + 300_000) in {(s.symbol, s.ts_ms) for s in ref_sink.snapshots},
            30,
            "the reference up to 300 s",
        )
    finally:
        await uninterrupted.stop()
        rmq.delete_all(section)
    ref = keyed([orjson.loads(json_encode(s)) for s in ref_sink.snapshots])
    assert 0 < second.consumer.replayed < 1000 - 600  # about a window of 250 s, not everything
    before = keyed([orjson.loads(json_encode(s)) for s in first_sink.snapshots])
    after = keyed([orjson.loads(json_encode(s)) for s in second_sink.snapshots])
    wrong = {k: (v, ref.get(k)) for k, v in after.items() if not same(v, ref.get(k))}
    assert not wrong, f"{len(wrong)} differ, e.g. {sorted(wrong.items())[0]}"
    assert all(same(v, ref.get(k)) for k, v in before.items())
    assert not set(ref) - set(before) - set(after)
