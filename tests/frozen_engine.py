"""An engine that serves fixed snapshots and figures: the screen's input without the moving
parts (snapshot tests, and app tests of what the screen does with the engine's answers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import (
    AnalyzerFigures,
    BusFigures,
    PipelineStats,
    SourceFigures,
    StageState,
)

SYMBOLS = ["AAPL", "MSFT", "BTC:USD"]


class FrozenEngine:
    """Serves fixed snapshots and figures: the screen's input, without the moving parts."""

    def __init__(self, latest: Mapping[str, SymbolSnapshot], stats: PipelineStats) -> None:
        self._latest = latest
        self._stats = stats
        self.symbols: list[str] = []
        self.previous_close: dict[str, float] = {}
        self.tape: dict[str, list[tuple[int, float, float]]] = {}

    @property
    def latest(self) -> Mapping[str, SymbolSnapshot]:
        return self._latest

    @property
    def stats(self) -> PipelineStats:
        return self._stats

    def start(self) -> None:
        return None

    def stop(self, timeout: float | None = None) -> bool:
        return True

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self.symbols = list(symbols)

    control_version = 0

    def recent_trades(self, symbol: str, n: int = 20) -> list[tuple[int, float, float]]:
        return self.tape.get(symbol, [])[:n]

    def stop_progress(self) -> str:
        return "stopped"

    @property
    def lost_at_exit(self) -> Mapping[str, int]:
        return {}


def fixed_stats(latest: Mapping[str, SymbolSnapshot]) -> PipelineStats:
    return PipelineStats(
        at=0.0,
        uptime=42.0,
        source=SourceFigures(
            kind="replay",
            endpoint="session.jsonl",
            connected=True,
            connections=1,
            reconnects=2,
            last_gap=0.05,
            max_gap=0.12,
            frames=400,
            frames_per_s=95.0,
            trades=2600,
            trades_per_s=1200.0,
            last_frame_age=0.1,
            subscribed=tuple(SYMBOLS),
            last_error=None,
            finished=False,
        ),
        bus=BusFigures(
            "memory", True, 1200, 100.0, 1200, 100.0, 0, 1000, 0, None, queue_unit="flushes"
        ),
        analyzer=AnalyzerFigures(
            trades=2600,
            trades_per_s=1200.0,
            symbols=len(latest),
            snapshots=500,
            late=0,
            watermark_ms=None,
            latency_p50=0.0021,
            latency_p99=0.0094,
            latency_p50_all=0.0021,
            latency_p99_all=0.0094,
        ),
        drops={"duplicate": 130, "malformed_json": 8},
        stages=(StageState("source", "running"), StageState("analyzer", "running")),
    )
