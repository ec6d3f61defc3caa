"""Emitted window snapshots as JSON Lines: a simple record of the metrics for scripts and tests.

The file stops growing at `max_bytes`: later snapshots are not written, counted as drops
(`jsonl_full`) and said once in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import msgspec

from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import SinkFigures

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class JsonlSink:
    """Raises OSError at once when the file cannot be opened for appending."""

    name = "jsonl"

    def __init__(self, path: Path, *, max_bytes: int = 1 << 30, drops: Drops | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("ab", buffering=1 << 20)
        self._room = max_bytes - path.stat().st_size  # bytes still allowed
        self._drops = drops or Drops()
        self.written = 0

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        if self._room < 0:
            self._drops.add("jsonl_full", len(snapshots), log=False)
            return
        data = _encoder.encode_lines(snapshots)
        if len(data) > self._room:
            self._room = -1
            log.warning("%s is full: later snapshots are not written", self.path)
            self._drops.add("jsonl_full", len(snapshots), log=False)
            return
        self._room -= len(data)
        self._fh.write(data)
        self._fh.flush()  # one write per emission batch: readers (and a crash) see whole lines
        self.written += len(snapshots)

    def figures(self) -> SinkFigures:
        return SinkFigures(path=str(self.path), written=self.written)

    async def close(self) -> None:
        self._fh.close()
