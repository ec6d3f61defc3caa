"""Snapshot tests of the screen (pytest-textual-snapshot), from a deterministic replay.

The real engine replays a generated recording; its final live snapshots are then frozen, with
a fixed clock and fixed pipeline figures, so every run renders the very same screen.
Update the baselines after an intended change with `pytest --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from stockup_tui.app import StockupApp
from stockup_tui.config import Settings, load_config
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.pipeline import Pipeline
from stockup_tui.engine.stats import (
    AnalyzerFigures,
    BusFigures,
    PipelineStats,
    SourceFigures,
    StageState,
)
from tests.test_pipeline import make_recording

SYMBOLS = ["AAPL", "MSFT", "BTC:USD"]


class FrozenEngine:
    """Serves fixed snapshots and figures: the screen's input, without the moving parts."""

    def __init__(self, latest: Mapping[str, SymbolSnapshot], stats: PipelineStats) -> None:
        self._latest = latest
        self._stats = stats
        self.symbols: list[str] = []

    @property
    def latest(self) -> Mapping[str, SymbolSnapshot]:
        return self._latest

    @property
    def stats(self) -> PipelineStats:
        return self._stats

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self.symbols = list(symbols)


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
        bus=BusFigures("memory", True, 1200, 100.0, 1200, 100.0, 0, 1000, 0, None),
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


@pytest.fixture(scope="module")
def frozen_latest(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, SymbolSnapshot]:
    import asyncio

    path = tmp_path_factory.mktemp("replay") / "session.jsonl"
    make_recording(path)
    settings = Settings.model_validate(
        {"symbols": SYMBOLS, "windows": ["1m", "5m"], "source": {"kind": "replay", "replay": path}}
    )

    async def run() -> Mapping[str, SymbolSnapshot]:
        pipe = Pipeline.from_settings(settings, live_points=60)
        await pipe.start()
        await pipe.wait_source_done()
        await pipe.stop()
        return dict(pipe.snapshots.latest)

    return asyncio.run(run())


def frozen_app(latest: Mapping[str, SymbolSnapshot], tmp_path: Path) -> StockupApp:
    loaded = load_config(overrides={"symbols": ",".join(SYMBOLS), "windows": "1m,5m"}, environ={})
    last_ms = max(s.last_trade_ms or 0 for s in latest.values())
    return StockupApp(
        loaded,
        FrozenEngine(latest, fixed_stats(latest)),
        clock=lambda: last_ms / 1000 + 1.5,
        config_path=tmp_path / "config.toml",
        save=False,
    )


def test_main_screen(snap_compare, frozen_latest, tmp_path: Path) -> None:
    assert snap_compare(frozen_app(frozen_latest, tmp_path), terminal_size=(140, 40))


def test_main_screen_light_theme_with_log(snap_compare, frozen_latest, tmp_path: Path) -> None:
    async def setup(pilot) -> None:
        pilot.app.theme = "stockup-light"
        await pilot.press("l", "down")
        await pilot.pause()

    assert snap_compare(
        frozen_app(frozen_latest, tmp_path), terminal_size=(120, 40), run_before=setup
    )
