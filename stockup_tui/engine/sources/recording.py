"""Recording raw frames and playing them back, so that runs are reproducible.

File format: JSON Lines, one object per frame received: ``{"r": <receive time, epoch seconds>,
"f": "<frame text>"}``, or ``"b": "<base64>"`` instead of ``"f"`` for a binary frame. Frames are
stored exactly as received (bad ones too), so a replay exercises the same parser paths; but a
frame longer than the parser accepts is stored as its size alone, ``"n": <chars>``, and replays
as the same counted drop (`oversized_frame`): a hostile feed cannot fill the disk that way.

A recording stops growing at `max_bytes`: the frames after that are not recorded, counted as
drops (`record_full`) and said once in the log.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

from stockup_tui.engine.drops import Drops
from stockup_tui.engine.sources.base import FrameHandler, ReadPacer, SourceStats

log = logging.getLogger(__name__)


class FrameRecorder:
    """Appends frames to a JSONL file; written in blocks, flushed on close.

    Raises OSError at once when the file cannot be opened for appending."""

    def __init__(
        self,
        path: Path,
        *,
        max_frame_bytes: int = 1_048_576,
        max_bytes: int = 1 << 30,
        drops: Drops | None = None,
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = path.open("ab", buffering=1 << 20)
        self._max_frame = max_frame_bytes
        self._room = max_bytes - path.stat().st_size  # bytes still allowed
        self._drops = drops or Drops()
        self.frames = 0

    def write(self, frame: str | bytes, recv_time: float) -> None:
        if self._fh is None:
            return
        if len(frame) > self._max_frame:
            rec: dict[str, object] = {"r": recv_time, "n": len(frame)}
        elif isinstance(frame, str):
            rec = {"r": recv_time, "f": frame}
        else:
            rec = {"r": recv_time, "b": base64.b64encode(frame).decode("ascii")}
        line = orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
        if len(line) > self._room:
            if self._room >= 0:
                self._room = -1  # said once
                log.warning("recording %s is full: later frames are not recorded", self.path)
            self._drops.add("record_full", log=False)
            return
        self._room -= len(line)
        self._fh.write(line)
        self.frames += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_recording(path: Path, drops: Drops | None = None) -> Iterator[tuple[float, str | bytes]]:
    """Yields (recorded receive time, frame); unreadable lines are counted, not fatal, and so
    are the oversized frames recorded by size alone."""
    with path.open("rb") as fh:
        for line in fh:
            try:
                rec = orjson.loads(line)
                r = rec["r"]
                if not isinstance(r, int | float):
                    raise TypeError("r is not a number")
                if "n" in rec and type(rec["n"]) is int:
                    if drops is not None:
                        size = rec["n"]
                        drops.add("oversized_frame", detail=f"{size} chars (recorded)", size=size)
                    continue
                frame: str | bytes = rec["f"] if "f" in rec else base64.b64decode(rec["b"])
                if not isinstance(frame, str | bytes):
                    raise TypeError("f is not a string")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if drops is not None:
                    drops.add("bad_recording_line", detail=str(exc))
                continue
            yield float(r), frame


class ReplaySource:
    """Plays a recording back: as fast as possible (`speed=0`) or paced (`speed=1` = recorded).

    The receive time handed on is the recorded one: the receive clock of a replay is the
    recording's, so every decision made on it (timestamps too far ahead or behind, the
    duplicate filter, the watermarks) is the same at any speed and on every run. Symbols are
    ignored: the recording decides what is played.
    """

    def __init__(self, path: Path, speed: float = 0.0, drops: Drops | None = None) -> None:
        self.path = path
        self.speed = speed
        self._drops = drops
        self._stopped = False
        self.stats = SourceStats(kind="replay", endpoint=str(path))

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self.stats.subscribed = tuple(symbols)

    async def stop(self) -> None:
        self._stopped = True

    async def run(self, on_frame: FrameHandler, pacer: ReadPacer | None = None) -> None:
        """Delivers the recorded frames at their pace (`pacer` is for sockets: unused)."""
        if not self.path.exists():
            raise FileNotFoundError(f"replay file not found: {self.path}")
        stats = self.stats
        stats.connected = True
        stats.connections += 1
        first_rec: float | None = None
        start = time.monotonic()
        n = 0
        for rec_time, frame in read_recording(self.path, self._drops):
            if self._stopped:
                break
            if self.speed > 0:
                if first_rec is None:
                    first_rec = rec_time
                delay = (rec_time - first_rec) / self.speed - (time.monotonic() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
            stats.frames += 1
            stats.bytes += len(frame)
            stats.last_frame_at = time.time()
            await on_frame(frame, rec_time)
            n += 1
            if n % 256 == 0:
                await asyncio.sleep(0)  # let the consumer run between bursts
        stats.connected = False
        stats.finished = True
        log.info("replay of %s finished: %d frames", self.path, n)
