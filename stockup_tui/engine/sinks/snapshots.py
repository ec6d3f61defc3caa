"""The latest snapshot per symbol, for the screen and the status line.

Readers (possibly on another thread) get an immutable mapping that is swapped whole, so they never
see a half-updated table and never take a lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import SinkFigures


class SnapshotStore:
    name = "screen"

    def __init__(self) -> None:
        self._latest: Mapping[str, SymbolSnapshot] = MappingProxyType({})
        self.version = 0  # bumps on every update, so a reader can skip unchanged frames
        self.emitted = 0

    @property
    def latest(self) -> Mapping[str, SymbolSnapshot]:
        return self._latest

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        """Emitted snapshots; the live ones from `replace` are fresher and take precedence."""
        self.emitted += len(snapshots)

    def replace(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        self._latest = MappingProxyType({s.symbol: s for s in snapshots})
        self.version += 1

    def figures(self) -> SinkFigures:
        return SinkFigures(symbols=len(self._latest), emitted=self.emitted)

    async def close(self) -> None:
        return None
