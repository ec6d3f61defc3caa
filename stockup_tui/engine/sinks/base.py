"""Where window snapshots go after the analyzer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import SinkFigures


class Sink(Protocol):
    name: str

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        """Takes emitted (interval-aligned) snapshots; must not block the event loop."""
        ...

    def figures(self) -> SinkFigures:
        """Health figures for the stats snapshot."""
        ...

    async def close(self) -> None:
        """Drains buffers; called once on shutdown."""
        ...


@runtime_checkable
class StartedSink(Protocol):
    """A sink with a thread of its own (InfluxDB), started once the bus is up."""

    def start(self) -> None: ...
