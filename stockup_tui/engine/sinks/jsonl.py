"""Emitted window snapshots as JSON Lines: a simple record of the metrics for scripts and tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import orjson

from stockup_tui.engine.model import SymbolSnapshot


class JsonlSink:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("ab", buffering=1 << 20)
        self.written = 0

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        fh = self._fh
        for snap in snapshots:
            fh.write(orjson.dumps(asdict(snap), option=orjson.OPT_APPEND_NEWLINE))
        fh.flush()  # one write per emission batch: readers (and a crash) see whole lines
        self.written += len(snapshots)

    def figures(self) -> dict[str, object]:
        return {"path": str(self.path), "written": self.written}

    async def close(self) -> None:
        self._fh.close()
