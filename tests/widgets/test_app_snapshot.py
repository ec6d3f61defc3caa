"""Snapshot tests of the screen (pytest-textual-snapshot), from a deterministic replay.

The real engine replays a generated recording; its final live snapshots are then frozen, with
a fixed clock and fixed pipeline figures, so every run renders the very same screen.
Update the baselines after an intended change with `pytest --snapshot-update`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from stockup_tui.app import StockupApp
from stockup_tui.config import Settings, load_config
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import PipelineStats, SinkFigures
from stockup_tui.engine.wiring import build_pipeline
from tests.helpers import make_recording
from tests.widgets.frozen_engine import SYMBOLS, FrozenEngine, cluster_stats, fixed_stats


@pytest.fixture(scope="module")
def frozen_latest(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, SymbolSnapshot]:
    import asyncio

    path = tmp_path_factory.mktemp("replay") / "session.jsonl"
    make_recording(path)
    settings = Settings.model_validate(
        {"symbols": SYMBOLS, "windows": ["1m", "5m"], "source": {"kind": "replay", "replay": path}}
    )

    async def run() -> Mapping[str, SymbolSnapshot]:
        pipe = build_pipeline(settings, live_points=60)
        await pipe.start()
        await pipe.wait_source_done()
        await pipe.stop()
        return dict(pipe.snapshots.latest)

    return asyncio.run(run())


def frozen_app(
    latest: Mapping[str, SymbolSnapshot],
    tmp_path: Path,
    stats: PipelineStats | None = None,
    **overrides: str,
) -> StockupApp:
    flags = {"symbols": ",".join(SYMBOLS), "windows": "1m,5m", **overrides}
    loaded = load_config(overrides=flags, environ={})
    last_ms = max(s.last_trade_ms or 0 for s in latest.values())
    engine = FrozenEngine(latest, stats or fixed_stats(latest))
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


def broken_stats(latest: Mapping[str, SymbolSnapshot]) -> PipelineStats:
    """The figures of a pipeline whose Kafka broker went away, and InfluxDB with it."""
    stats = fixed_stats(latest)
    bus = replace(
        stats.bus,
        kind="kafka",
        connected=False,
        last_error="cannot reach 127.0.0.1:9092: KafkaConnectionError",
        queue_depth=5_242_880,
        queue_capacity=67_108_864,
        queue_unit="bytes",
    )
    influx = SinkFigures(state="down", written=1200, pending=300, error="connection refused")
    return replace(stats, bus=bus, sinks={"influx": influx})


def test_80x24_with_the_bus_down(snap_compare, frozen_latest, tmp_path: Path) -> None:
    """The smallest usual terminal: no side panes, the red stage named in the status bar, help
    and quit in the footer."""
    app = frozen_app(frozen_latest, tmp_path, broken_stats(frozen_latest))
    assert snap_compare(app, terminal_size=(80, 24))


def test_160x45_pipeline_full_screen_with_the_bus_down(
    snap_compare, frozen_latest, tmp_path: Path
) -> None:
    async def setup(pilot) -> None:
        await pilot.press("P")
        await pilot.pause()

    app = frozen_app(frozen_latest, tmp_path, broken_stats(frozen_latest))
    assert snap_compare(app, terminal_size=(160, 45), run_before=setup)


def monitor_app(latest: Mapping[str, SymbolSnapshot], tmp_path: Path) -> StockupApp:
    """A `--role monitor` screen over a cluster with two analyzers, one of them killed."""
    stats = cluster_stats(latest)
    return frozen_app(latest, tmp_path, stats, role="monitor", **{"bus.kind": "kafka"})


def test_160x45_monitor_with_the_cluster_view(snap_compare, frozen_latest, tmp_path: Path) -> None:
    assert snap_compare(monitor_app(frozen_latest, tmp_path), terminal_size=(160, 45))


def test_80x24_monitor_cluster_full_screen(snap_compare, frozen_latest, tmp_path: Path) -> None:
    async def setup(pilot) -> None:
        await pilot.press("P")
        await pilot.pause()

    assert snap_compare(
        monitor_app(frozen_latest, tmp_path), terminal_size=(80, 24), run_before=setup
    )


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test, whatever the machine's zone (the tape shows clock times)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_80x24_symbol_view(snap_compare, frozen_latest, tmp_path: Path, utc: None) -> None:
    """`Enter` on a row: the chart with its time axis, every window's metrics, the tape."""
    app = frozen_app(frozen_latest, tmp_path)
    last_ms = max(s.last_trade_ms or 0 for s in frozen_latest.values())
    tape = [(last_ms - 700 * i, 190.0 - 0.01 * (i % 7), float(10 * (i % 5 + 1))) for i in range(30)]
    app.engine.tape = {"AAPL": tape}  # type: ignore[attr-defined]

    async def setup(pilot) -> None:
        from stockup_tui.widgets.symbol_view import SymbolScreen

        await pilot.pause()  # the first refresh fills the table
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(pilot.app.screen, SymbolScreen)

    assert snap_compare(app, terminal_size=(80, 24), run_before=setup)
