"""Files the app writes (a recording, the JSONL metrics) stop at their configured size with the
rest counted, a hostile feed's oversized frames are recorded by size only, and a path that
cannot be written is a clear error at start."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.sinks.jsonl import JsonlSink
from stockup_tui.engine.sources.parser import FrameParser
from stockup_tui.engine.sources.recording import FrameRecorder, read_recording

CMD = [sys.executable, "-m", "stockup_tui"]
FRAME = orjson.dumps(
    {"type": "trade", "data": [{"s": "AAPL", "p": 1.5, "t": 1_764_085_200_000, "v": 1}]}
).decode()


def test_a_recording_stores_oversized_frames_by_size_and_stops_at_its_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rec.jsonl"
    drops = Drops()
    rec = FrameRecorder(path, max_frame_bytes=1024, max_bytes=4096, drops=drops)
    rec.write("x" * 5_000_000, 1.0)  # a hostile frame: a few bytes on disk, not 5 MB
    with caplog.at_level(logging.WARNING):
        for k in range(100):
            rec.write(FRAME, 2.0 + k)
    rec.close()
    size = path.stat().st_size
    assert size <= 4096
    assert rec.frames + drops.get("record_full") == 101
    assert drops.get("record_full") > 0
    assert sum("is full" in r.getMessage() for r in caplog.records) == 1  # said once
    # The replay gives the oversized frame back as the same counted drop.
    replay_drops = Drops()
    parser = FrameParser(replay_drops, None, 1024)
    for when, frame in read_recording(path, replay_drops):
        parser.parse(frame, when)
    assert replay_drops.snapshot() == {"oversized_frame": 1}
    assert replay_drops.bytes_snapshot() == {"oversized_frame": 5_000_000}
    assert parser.trades == rec.frames - 1
    # Appending to a full recording records nothing more.
    again = FrameRecorder(path, max_frame_bytes=1024, max_bytes=4096, drops=drops)
    again.write(FRAME, 500.0)
    again.close()
    assert path.stat().st_size == size


async def test_the_jsonl_file_stops_at_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    drops = Drops()
    sink = JsonlSink(path, max_bytes=1000, drops=drops)
    snaps = [SymbolSnapshot("AAPL", 1000 * k, 1.0, 1000 * k, ()) for k in range(40)]
    for k in range(0, 40, 4):
        sink.write(snaps[k : k + 4])
    await sink.close()
    lines = path.read_bytes().splitlines()
    assert path.stat().st_size <= 1000
    assert len(lines) == sink.written and sink.written % 4 == 0  # whole batches only
    assert sink.written + drops.get("jsonl_full") == 40 and drops.get("jsonl_full") > 0


@pytest.mark.parametrize(
    ("flag", "key"), [("--record", "source.record"), ("--metrics-out", "sinks.jsonl")]
)
def test_a_file_that_cannot_be_written_is_a_clear_error(
    tmp_path: Path, flag: str, key: str
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    proc = subprocess.run(
        [*CMD, "--headless", flag, str(blocker / "sub" / "x.jsonl")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"stockup-tui: {key}: cannot write ")
    assert "Traceback" not in proc.stderr
