"""The real app on the real engine and simulator, driven by keys through Textual's Pilot."""

from __future__ import annotations

import re
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from stockup_tui.app import StockupApp
from stockup_tui.config import load_config
from stockup_tui.engine.host import EngineHost
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.widgets.dialogs import (
    AddSymbolsScreen,
    AlertScreen,
    AlertsScreen,
    HelpScreen,
    QuitScreen,
)
from stockup_tui.widgets.quotes import QuotesTable
from tests.widgets.frozen_engine import FrozenEngine, fixed_stats

SIZE = (140, 40)


def make_app(tmp_path: Path, **overrides: Any) -> StockupApp:
    flags = {
        "symbols": "AAPL,MSFT",
        "windows": "1m,5m",
        # Modest rates: Pilot waits for the whole process to go idle after every key press,
        # and the engine shares the process.
        "simulator.rate": 50,
        "simulator.seed": 1,
        "ui.refresh": 0.2,
        **overrides,
    }
    loaded = load_config(overrides=flags, environ={})
    host = EngineHost(loaded.settings, live_interval=0.05, live_points=60)
    return StockupApp(loaded, host, config_path=tmp_path / "config.toml")


async def until(pilot: Pilot, cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def rows(app: StockupApp) -> list[str]:
    table = app.query_one(QuotesTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def subscriptions(app: StockupApp) -> set[str]:
    sim = app.engine.pipeline.simulator  # type: ignore[attr-defined]
    return sim.simulator.subscriptions()


def saved(app: StockupApp) -> dict[str, Any]:
    return tomllib.loads(app.config_path.read_text())


async def test_table_fills_with_live_trades(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "two rows")
        await until(pilot, lambda: set(app.engine.latest) >= {"AAPL", "MSFT"}, "snapshots for both")
        table = app.query_one(QuotesTable)
        await until(
            pilot, lambda: "-" not in str(table.get_row_at(0)[1]), "a price in the last column"
        )


async def test_add_and_remove_symbols_reach_the_feed_and_the_file(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: subscriptions(app) == {"AAPL", "MSFT"}, "initial subs")
        await pilot.press("a")
        assert isinstance(app.screen, AddSymbolsScreen)
        await pilot.press(*"tsla, nvda", "enter")
        await until(
            pilot, lambda: subscriptions(app) == {"AAPL", "MSFT", "TSLA", "NVDA"}, "subscribe"
        )
        assert rows(app) == ["AAPL", "MSFT", "TSLA", "NVDA"]
        assert saved(app)["symbols"] == ["AAPL", "MSFT", "TSLA", "NVDA"]

        app.query_one(QuotesTable).select_symbol("MSFT")
        await until(pilot, lambda: app.quotes.selected_symbol == "MSFT", "MSFT selected")
        await pilot.press("d")
        await until(pilot, lambda: "MSFT" not in subscriptions(app), "unsubscribe")
        assert rows(app) == ["AAPL", "TSLA", "NVDA"]
        assert saved(app)["symbols"] == ["AAPL", "TSLA", "NVDA"]

        app.query_one(QuotesTable).select_symbol("AAPL")
        await until(pilot, lambda: app.quotes.selected_symbol == "AAPL", "AAPL selected")
        await pilot.press("J")
        assert app.watchlists.symbols == ["TSLA", "AAPL", "NVDA"]
        await until(pilot, lambda: rows(app) == ["TSLA", "AAPL", "NVDA"], "moved row")


async def test_a_bad_symbol_gets_a_clear_message(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", *"AAPL b@d", "enter")
        screen = app.screen
        assert isinstance(screen, AddSymbolsScreen)  # not accepted
        message = str(screen.query_one("#prompt-message").render())
        assert "'b@d' is not a valid symbol" in message
        await pilot.press("escape")
        assert not isinstance(app.screen, AddSymbolsScreen)
        assert app.watchlists.symbols == ["AAPL", "MSFT"]


async def test_sort_filter_pause_window_and_help(tmp_path: Path) -> None:
    app = make_app(tmp_path, symbols="AAPL,MSFT,TSLA,IBM")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 4, "four rows")
        await pilot.press("s")  # sort by the first sortable column: symbol
        await until(pilot, lambda: rows(app) == sorted(rows(app)), "sorted by symbol")
        await pilot.press("r")
        await until(pilot, lambda: rows(app) == sorted(rows(app), reverse=True), "reversed")
        await pilot.press("o")
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT", "TSLA", "IBM"], "list order")

        await pilot.press("slash", *"ms")
        await until(pilot, lambda: rows(app) == ["MSFT"], "filtered")
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app)) == 4, "filter cleared")

        await pilot.press("space")
        assert app.paused and "PAUSED" in app.sub_title
        await pilot.press("space")
        assert not app.paused

        await pilot.press("w")
        assert app.window_index == 1 and "window 5m" in app.sub_title

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = str(app.screen.query_one("#help-keys").render())
        assert "Add symbols" in keys and "price alert" in keys and "Quit" in keys
        for shown in ("d / del", "space / p", "K / shift+↑", "pgup / pgdn", "home / end", "click"):
            assert shown in keys, shown
        for raw in ("slash", "question_mark", "d,delete"):
            assert raw not in keys, raw
        await pilot.press("escape")


async def test_palette_runs_actions(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"Add symbols")
        await until(pilot, lambda: _palette_has(app, "Add"), "palette match")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AddSymbolsScreen), "add prompt")


def _palette_has(app: StockupApp, text: str) -> bool:
    from textual.command import CommandPalette

    screen = app.screen
    if not isinstance(screen, CommandPalette):
        return False
    from textual.command import CommandList

    options = screen.query_one(CommandList)
    return options.option_count > 0 and text in str(options.get_option_at_index(0).prompt)


async def test_theme_switch_is_saved(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "stockup-dark"
        app.theme = "stockup-light"
        await pilot.pause()
        assert saved(app)["ui"]["theme"] == "stockup-light"


def priced(**last: float) -> dict[str, SymbolSnapshot]:
    return {sym: SymbolSnapshot(sym, 1_000, price, 1_000, ()) for sym, price in last.items()}


def frozen_app(tmp_path: Path, engine: FrozenEngine, **flags: Any) -> StockupApp:
    loaded = load_config(overrides={"symbols": "AAPL,MSFT", **flags}, environ={})
    return StockupApp(loaded, engine, config_path=tmp_path / "config.toml")


async def test_an_alert_that_holds_already_is_refused_with_the_reason(tmp_path: Path) -> None:
    engine = FrozenEngine(priced(AAPL=173.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        app.quotes.select_symbol("AAPL")
        await until(pilot, lambda: app.quotes.selected_symbol == "AAPL", "AAPL selected")
        await pilot.press("b")
        assert isinstance(app.screen, AlertScreen)
        await pilot.press(*"above 100", "enter")
        assert isinstance(app.screen, AlertScreen)  # still open
        message = str(app.screen.query_one("#prompt-message", Static).render())
        assert "AAPL is above 100 already (last 173)" in message
        assert app.alerts == []


async def test_an_alert_fires_once_while_paused_rings_and_is_kept_until_then(
    tmp_path: Path,
) -> None:
    engine = FrozenEngine(priced(AAPL=173.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine, **{"ui.bell": True})
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        app.quotes.select_symbol("AAPL")
        await until(pilot, lambda: app.quotes.selected_symbol == "AAPL", "AAPL selected")
        await pilot.press("b", *"180", "enter")
        assert [str(a) for a in app.alerts] == ["AAPL above 180"]
        assert saved(app)["alerts"] == ["AAPL above 180"]  # kept across restarts
        await pilot.press("space")
        assert app.paused
        engine._latest = priced(AAPL=180.5)
        await until(pilot, lambda: not app.alerts, "the alert to fire while paused")
        await pilot.pause(0.5)  # more refreshes: it fires once
    log_text = "\n".join(item[1] for item in app.events.events)
    assert log_text.count("ALERT AAPL is above 180: last 180.5") == 1
    assert rings == [1]
    assert saved(app)["alerts"] == []


async def test_alerts_from_the_config_file_are_listed_and_removed(tmp_path: Path) -> None:
    engine = FrozenEngine(priced(AAPL=173.0, MSFT=400.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine, alerts="AAPL above 500, msft below 1")
    async with app.run_test(size=SIZE) as pilot:
        assert [str(a) for a in app.alerts] == ["AAPL above 500", "MSFT below 1"]
        await pilot.press("B")
        assert isinstance(app.screen, AlertsScreen)
        await pilot.press("d", "escape")
        assert [str(a) for a in app.alerts] == ["MSFT below 1"]
        assert saved(app)["alerts"] == ["MSFT below 1"]


async def test_quit_is_clean(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine.pipeline.analyzer.ingested > 100, "trades")
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, "the app to exit")
    pipe = app.engine.pipeline  # type: ignore[attr-defined]
    assert app.engine._thread is not None and not app.engine._thread.is_alive()
    assert pipe.analyzer.ingested == pipe.parser.trades  # drained, nothing lost
    assert app.return_code == 0 and app.exit_note is None


class StuckEngine(FrozenEngine):
    """An engine whose stop waits on a broker that is gone (until the test lets it go)."""

    def __init__(self) -> None:
        super().__init__({}, fixed_stats({}))
        self.release = threading.Event()
        self.stopped = threading.Event()

    def stop(self, timeout: float | None = None) -> bool:
        self.release.wait(30)
        self.stopped.set()
        return True

    def stop_progress(self) -> str:
        return "sending 1,204 trades to Kafka"

    @property
    def lost_at_exit(self) -> dict[str, int]:
        return {"bus_unsent_at_exit": 1204} if self.release.is_set() else {}


async def test_quitting_says_what_it_waits_for_and_quitting_again_abandons(
    tmp_path: Path,
) -> None:
    engine = StuckEngine()
    loaded = load_config(overrides={"symbols": "AAPL"}, environ={})
    app = StockupApp(loaded, engine, config_path=tmp_path / "config.toml")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            shown = str(app.screen.query_one("#quit-progress", Static).render())
            assert "sending 1,204 trades to Kafka" in shown and "at most 30s" in shown
            await pilot.press("ctrl+c")
            await until(pilot, lambda: app.return_code is not None, "the app to exit")
    finally:
        engine.release.set()
    assert app.return_code == 3 and app.quitting == "abandoned"
    assert app.exit_note == (
        "stockup-tui: abandoned while sending 1,204 trades to Kafka: that data is lost"
    )


async def test_a_drain_that_lost_data_exits_with_code_3(tmp_path: Path) -> None:
    engine = StuckEngine()
    engine.release.set()  # the drain ends by itself, having lost trades
    loaded = load_config(overrides={"symbols": "AAPL"}, environ={})
    app = StockupApp(loaded, engine, config_path=tmp_path / "config.toml")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert engine.stopped.is_set()
    assert app.return_code == 3
    assert app.exit_note == "stockup-tui: stopped, but lost at exit: bus_unsent_at_exit 1,204"


@pytest.mark.parametrize("width", [70])
async def test_narrow_terminal_keeps_the_essentials(tmp_path: Path, width: int) -> None:
    app = make_app(tmp_path)
    async with app.run_test(size=(width, 30)) as pilot:
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "rows")
        keys = app.query_one(QuotesTable).visible_columns
        assert {"symbol", "last", "chg_pct"} <= set(keys) and "spark" not in keys


async def test_hidden_panes_are_not_refreshed(tmp_path: Path) -> None:
    from stockup_tui.app import HEALTH_EVERY

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        calls: list[int] = []
        original = app.health.update_health
        app.health.update_health = lambda st: calls.append(1) or original(st)  # type: ignore[method-assign]
        await until(pilot, lambda: len(calls) > 0, "health refreshed")
        await pilot.press("h")
        assert not app.health.display
        seen, ticks = len(calls), app._ticks
        await until(pilot, lambda: app._ticks > ticks + 2 * HEALTH_EVERY, "refresh ticks")
        assert len(calls) == seen
        await pilot.press("h")
        assert app.health.display
        await until(pilot, lambda: len(calls) > seen, "health refreshed again")


async def test_tab_cycles_named_watchlists(tmp_path: Path) -> None:
    app = make_app(tmp_path, **{"watchlists.crypto": "BINANCE:BTCUSDT"})
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: subscriptions(app) == {"AAPL", "MSFT"}, "main list")
        await pilot.press("tab")
        assert app.watchlists.active == "crypto"
        await until(pilot, lambda: subscriptions(app) == {"BINANCE:BTCUSDT"}, "crypto list")
        await until(pilot, lambda: rows(app) == ["BINANCE:BTCUSDT"], "crypto row")
        assert saved(app)["ui"]["watchlist"] == "crypto"
        await pilot.press("shift+tab")
        assert app.watchlists.active == "main"
        await until(pilot, lambda: subscriptions(app) == {"AAPL", "MSFT"}, "main again")


async def test_window_switch_repaints_only_what_changed(tmp_path: Path) -> None:
    """The subtitle is not a screen-wide reactive: `w` must not repaint the whole screen."""
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "rows")
        screen = app.screen
        repaints: list[tuple[object, ...]] = []
        original = screen.refresh

        def spy(*regions: object, **kwargs: object) -> object:
            repaints.append((regions, kwargs))
            return original(*regions, **kwargs)

        screen.refresh = spy  # type: ignore[method-assign]
        await pilot.press("w")
        assert "window 5m" in str(app.statusbar.render())
        assert app.sub_title.endswith("window 5m")
        assert repaints == []


async def test_frames_may_follow_each_other_closer_than_textuals_default(tmp_path: Path) -> None:
    import os

    from stockup_tui.app import MAX_FPS

    if "TEXTUAL_FPS" in os.environ:
        pytest.skip("TEXTUAL_FPS is set: Textual's own setting wins")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE):
        # A frame asked for right after another waits at most this long for its slot.
        assert app.screen._update_timer._interval == pytest.approx(1 / MAX_FPS)
        assert MAX_FPS >= 120


async def test_startup_objects_are_frozen_out_of_the_cyclic_gc(tmp_path: Path) -> None:
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = make_app(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: gc.get_freeze_count() > 0, "the freeze", timeout=15)
            # Everything alive then: modules, widgets, the engine; the collector still runs.
            assert gc.get_freeze_count() > 10_000
            assert gc.isenabled()
    finally:
        gc.unfreeze()


async def test_a_keys_refresh_leaves_the_health_pane_to_the_timer(tmp_path: Path) -> None:
    from stockup_tui.app import HEALTH_EVERY

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        calls: list[int] = []
        original = app.health.update_health
        app.health.update_health = lambda st: calls.append(1) or original(st)  # type: ignore[method-assign]
        await until(pilot, lambda: len(calls) > 0, "health refreshed by the timer")
        seen, ticks = len(calls), app._ticks
        for _ in range(2 * HEALTH_EVERY):
            app.refresh_now()  # what a key press does (no tick can run in between)
        assert len(calls) == seen and app._ticks == ticks
        for _ in range(HEALTH_EVERY):
            app.refresh_panes()  # the timer's refresh
        assert len(calls) == seen + 1 and app._ticks == ticks + HEALTH_EVERY


MARKUP = ["[/", "[b]x", "[/i]", "[link=x]y", "[@click=app.quit]q", "\\[", "]["]


async def test_markup_typed_into_every_input_is_just_text(tmp_path: Path) -> None:
    """Rich markup typed anywhere is shown as typed: no crash, nothing interpreted, and the app
    still works afterwards."""
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "two rows")
        for text in MARKUP:
            await pilot.press("a", *text)
            screen = app.screen
            assert isinstance(screen, AddSymbolsScreen)
            message = str(screen.query_one("#prompt-message").render())
            assert text.upper() in message or text in message, (text, message)
            await pilot.press("enter", "escape")
            assert app.is_running
        await pilot.press("b", *"[/b]", "enter")
        assert isinstance(app.screen, AlertScreen) and app.is_running
        await pilot.press("escape")
        await pilot.press("slash", *"[/i]")
        await until(pilot, lambda: rows(app) == [], "nothing matches the filter")
        await pilot.press("escape")
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "filter cleared")
        assert app.is_running


async def test_names_from_the_config_file_are_shown_as_text(tmp_path: Path) -> None:
    """A watchlist named like markup is a name: the app starts, and the status bar and the toast
    for it show it literally."""
    app = make_app(tmp_path, **{"watchlists.[/i]x": "BINANCE:BTCUSDT"})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("tab")
        assert app.watchlists.active == "[/i]x"
        bar = str(app.query_one("#statusbar").render())
        assert "[/i]x" in bar
        await pilot.press("shift+tab")
        app.notify("only one watchlist: add more under [watchlists] in the config file")
        await pilot.pause()
        assert app.is_running


async def test_remove_then_undo_puts_the_symbol_back_with_its_alerts(tmp_path: Path) -> None:
    engine = FrozenEngine(priced(AAPL=173.0, MSFT=400.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine, alerts="MSFT above 500")
    async with app.run_test(size=SIZE) as pilot:
        app.quotes.select_symbol("MSFT")
        await until(pilot, lambda: app.quotes.selected_symbol == "MSFT", "MSFT selected")
        await pilot.press("d")
        assert app.watchlists.symbols == ["AAPL"] and app.alerts == []
        assert saved(app)["symbols"] == ["AAPL"]
        await pilot.press("u")
        assert app.watchlists.symbols == ["AAPL", "MSFT"]
        assert [str(a) for a in app.alerts] == ["MSFT above 500"]
        assert saved(app)["symbols"] == ["AAPL", "MSFT"]
        await until(pilot, lambda: app.quotes.selected_symbol == "MSFT", "MSFT selected again")
        await pilot.press("u")  # nothing left to undo: said, nothing changes
        assert app.watchlists.symbols == ["AAPL", "MSFT"]


async def test_adding_past_the_limit_says_so_once(tmp_path: Path) -> None:
    engine = FrozenEngine(priced(AAPL=173.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        app.screen.query_one(Input).value = ",".join(f"S{i}" for i in range(200))  # a paste
        await pilot.press("enter")
        assert len(app.watchlists.symbols) == 50
        toasts = [n.message for n in app._notifications]
        assert len(toasts) == 1 and "152 not added" in toasts[0]
        log_text = "\n".join(item[1] for item in app.events.events)
        assert log_text.count("not added") == 1


async def test_a_filter_without_a_match_says_so_and_escape_on_the_table_clears_it(
    tmp_path: Path,
) -> None:
    engine = FrozenEngine(priced(AAPL=173.0, MSFT=400.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"zz", "enter")  # Enter keeps the filter, focus on the table
        await until(pilot, lambda: rows(app) == [], "nothing matches")
        assert app.quotes.has_focus
        first_row = app.quotes.render_line(1).text
        assert "no symbol matches 'zz'" in first_row
        status = app.query_one("#statusbar", Static)
        assert app.filter_box.region.y > status.region.y  # under the status bar, not over it
        await pilot.press("escape")
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "the filter cleared")
        assert not app.filter_box.value


async def test_at_80x24_the_footer_keeps_keys_and_quit_and_a_problem_shows(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from textual.widgets._footer import FooterKey

    stats = fixed_stats({})
    down = replace(stats, bus=replace(stats.bus, kind="kafka", connected=False, last_error="gone"))
    engine = FrozenEngine(priced(AAPL=173.0), down)
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        shown = {k.action for k in app.query(FooterKey) if k.region.right <= 80 and k.region.width}
        assert {"help", "quit"} <= shown
        assert not app.query_one("#side").display  # narrow: no Pipeline pane, the table is wide
        await until(pilot, lambda: app._problem is not None, "the problem in the status bar")
        bar = str(app.statusbar.render())
        assert "● bus kafka down: gone" in bar


async def test_the_pipeline_opens_full_screen_at_80x24_and_scrolls_by_keyboard(
    tmp_path: Path,
) -> None:
    from stockup_tui.widgets.dialogs import PipelineScreen

    engine = FrozenEngine(priced(AAPL=173.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("P")
        assert isinstance(app.screen, PipelineScreen)
        pane = app.screen.pane
        await pilot.pause()
        assert pane.has_focus and pane.max_scroll_y > 0  # more sections than rows
        await pilot.press("end")
        await until(pilot, lambda: pane.scroll_y == pane.max_scroll_y, "scrolled to the end")
        assert "Stages" in str(pane.query_one("#health-stages").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, PipelineScreen)


async def test_x_exports_the_table_as_shown_to_csv(tmp_path: Path) -> None:
    import csv

    engine = FrozenEngine(priced(AAPL=173.0, MSFT=400.0, AMD=150.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine, symbols="AAPL,MSFT,AMD")
    app.export_dir = tmp_path
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, "three rows")
        await pilot.press("slash", "a", "enter")  # filter: AAPL and AMD
        await until(pilot, lambda: len(rows(app)) == 2, "filtered")
        await pilot.press("x")
    files = list(tmp_path.glob("stockup-main-*.csv"))
    assert len(files) == 1
    with files[0].open(newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["symbol"] for r in got] == ["AAPL", "AMD"]
    assert float(got[0]["last"]) == 173.0


async def test_watchlists_are_made_renamed_deleted_and_symbols_moved_from_the_keyboard(
    tmp_path: Path,
) -> None:
    from stockup_tui.widgets.watchlist_dialogs import MoveScreen, NameScreen, WatchlistsScreen

    engine = FrozenEngine(priced(AAPL=173.0, MSFT=400.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("W")
        assert isinstance(app.screen, WatchlistsScreen)
        await pilot.press("n")
        assert isinstance(app.screen, NameScreen)
        await pilot.press(*"tech", "enter")
        await pilot.press("escape")  # close the list: the new one is active
        assert app.watchlists.active == "tech" and engine.symbols == []
        assert saved(app)["watchlists"] == {"tech": []}
        await pilot.press("shift+tab")  # back to main
        await until(pilot, lambda: app.watchlists.active == "main", "main active")
        app.quotes.select_symbol("MSFT")
        await until(pilot, lambda: app.quotes.selected_symbol == "MSFT", "MSFT selected")
        await pilot.press("m")
        assert isinstance(app.screen, MoveScreen)
        await pilot.press("enter")  # the only other list: tech
        assert app.watchlists.lists == {"main": ["AAPL"], "tech": ["MSFT"]}
        assert engine.symbols == ["AAPL"]  # the feed follows the active list
        await pilot.press("W", "down", "r")
        await pilot.press(*(["backspace"] * 4), *"chips", "enter", "escape")
        assert list(app.watchlists.lists) == ["main", "chips"]
        await pilot.press("W", "down", "d")
        assert list(app.watchlists.lists) == ["main", "chips"]  # one d only asks
        await pilot.press("d", "escape")
        assert list(app.watchlists.lists) == ["main"]
    assert "chips" not in saved(app).get("watchlists", {})
    log_text = "\n".join(item[1] for item in app.events.events)
    assert "watchlist chips deleted (MSFT)" in log_text


async def test_a_watchlist_changed_on_another_screen_shows_here(tmp_path: Path) -> None:
    engine = FrozenEngine(priced(AAPL=173.0, NFLX=90.0), fixed_stats({}))
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "the configured list")
        engine.symbols = ["AAPL", "NFLX"]  # what the control topic said, as the engine took it
        engine.control_version = 1
        await until(pilot, lambda: rows(app) == ["AAPL", "NFLX"], "the list from the monitor")
    assert saved(app)["symbols"] == ["AAPL", "NFLX"]
    log_text = "\n".join(item[1] for item in app.events.events)
    assert "watchlist changed on another screen: AAPL, NFLX" in log_text


async def test_the_day_change_against_the_previous_close(tmp_path: Path) -> None:
    from stockup_tui.widgets.format import DASH

    engine = FrozenEngine(priced(AAPL=176.0, MSFT=400.0), fixed_stats({}))
    engine.previous_close = {"AAPL": 160.0}  # MSFT: not known (yet)
    app = frozen_app(tmp_path, engine)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.quotes
        await until(pilot, lambda: rows(app) == ["AAPL", "MSFT"], "both rows")
        assert "day_pct" in table.visible_columns
        assert table.get_cell("AAPL", "day_pct").plain.strip() == "+10.00%"
        assert table.get_cell("MSFT", "day_pct").plain.strip() == DASH
        table.select_symbol("AAPL")
        await until(pilot, lambda: "day +10.00%" in app.detail.title_text, "the day in the title")
        assert app.detail.title_text.endswith("· prev close 160.00")
        table.sort_by("day_pct", reverse=True)
        assert table.shown_symbols == ["AAPL", "MSFT"]  # without a close: last


async def test_enter_shows_the_symbol_full_screen_with_a_time_axis_and_its_tape(
    tmp_path: Path,
) -> None:
    from stockup_tui.engine.model import WindowMetrics
    from stockup_tui.widgets.symbol_view import SymbolScreen

    def metrics(width: int) -> WindowMetrics:
        closes = tuple(170.0 + i / 10 for i in range(30))
        return WindowMetrics(width, 30, 300.0, 170.0, 172.9, 170.0, 172.9, 171.5, 171.4,
                             2.9, 1.7, 0.5, closes)  # fmt: skip

    latest = {
        "AAPL": SymbolSnapshot("AAPL", 1_000, 172.9, 1_000, (metrics(60_000), metrics(300_000)))
    }
    engine = FrozenEngine(latest, fixed_stats({}))
    engine.tape = {"AAPL": [(1_764_000_000_250, 172.9, 100.0), (1_764_000_000_000, 172.8, 5.0)]}
    app = frozen_app(tmp_path, engine, symbols="AAPL")
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: rows(app) == ["AAPL"], "the row")
        await pilot.press("enter")
        assert isinstance(app.screen, SymbolScreen)
        screen = app.screen
        await until(pilot, lambda: "172.90" in screen.tape_text, "the tape")
        assert screen.tape_text.splitlines()[0].endswith("172.90      100")
        chart = screen.detail.chart
        await until(pilot, lambda: chart.series is not None, "the chart")
        assert (chart.series.buckets, chart.series.span_ms) == (60, 60_000)
        await pilot.press("w")  # the next window, here too
        await until(pilot, lambda: chart.series.span_ms == 300_000, "the 5m chart")
        await pilot.press("escape")
        assert not isinstance(app.screen, SymbolScreen)


async def test_the_tape_shows_the_real_engines_latest_trades(tmp_path: Path) -> None:
    from stockup_tui.widgets.symbol_view import SymbolScreen

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "AAPL" in app.engine.latest, "AAPL trades")
        app.quotes.select_symbol("AAPL")
        await until(pilot, lambda: app.quotes.selected_symbol == "AAPL", "AAPL selected")
        await pilot.press("enter")
        assert isinstance(app.screen, SymbolScreen)
        screen = app.screen
        await until(pilot, lambda: ":" in screen.tape_text, "trades on the tape")
        lines = screen.tape_text.splitlines()
        assert 0 < len(lines) <= 40
        for line in lines:  # time, price, volume: the newest first
            clock, price, _volume = line.split()
            assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", clock) and float(price) > 0
        clocks = [line.split()[0] for line in lines]
        assert clocks == sorted(clocks, reverse=True)


async def test_a_monitor_names_a_silent_process_and_shows_the_cluster(tmp_path: Path) -> None:
    """`--role monitor`: the side pane is the Cluster view; at 80x24 (no side pane) the status
    bar names the silent analyzer, and `P` opens the cluster full screen."""
    from stockup_tui.widgets.dialogs import PipelineScreen
    from tests.widgets.frozen_engine import cluster_stats

    engine = FrozenEngine(priced(AAPL=173.0), cluster_stats({}))
    app = frozen_app(tmp_path, engine, role="monitor", **{"bus.kind": "kafka"})
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app._problem is not None, "the problem in the status bar")
        assert "analyzer box-1 silent for 7.2s" in str(app.statusbar.render())
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, PipelineScreen), "the full pane")
        pane = app.screen.pane  # type: ignore[attr-defined]
        assert pane.border_title == "Cluster"
        text = str(pane.query_one("#health-cluster").render())
        assert "box-1" in text and "silent" in text
        assert not pane.query_one("#health-analyzer").display  # the monitor has no analyzer
        parts = str(pane.query_one("#health-partitions").render())
        assert "p3" in parts and "(silent)" in parts
