"""Snapshot tests of the screen (pytest-textual-snapshot), from a deterministic replay.

The real engine replays a generated recording; its final live snapshots are then frozen, with
a fixed clock and fixed pipeline figures, so every run renders the very same screen.
Update the baselines after an intended change with `pytest --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from stockup_tui.app import StockupApp
from stockup_tui.config import Settings, load_config
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.pipeline import Pipeline
from tests.frozen_engine import SYMBOLS, FrozenEngine, fixed_stats
from tests.test_pipeline import make_recording


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
    engine = FrozenEngine(latest, fixed_stats(latest))
    engine.previous_close = {"AAPL": 187.5, "MSFT": 425.0}  # BTC:USD: none known
    return StockupApp(
        loaded,
        engine,
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
