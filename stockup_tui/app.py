"""The Textual dashboard: a thin App over the engine.

The engine runs on its own thread (`EngineHost`); this App never sees a trade. A timer pulls the
engine's immutable snapshots about ten times a second and hands them to the visible panes, which
update only what changed. Keys edit the watchlists; a change goes to the feed's subscription at
once and to the config file, so it survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import textual.screen
from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from stockup_tui import exits
from stockup_tui.alerts import Alert, fired, parse_alert
from stockup_tui.config import LoadedConfig, Role, default_config_path, save_settings
from stockup_tui.engine.drops import describe_losses
from stockup_tui.engine.model import SymbolSnapshot, window_label
from stockup_tui.engine.stats import PipelineStats
from stockup_tui.themes import builtin_theme_dir, discover_themes, user_theme_dir
from stockup_tui.untrusted import printable, safe
from stockup_tui.watchlists import Watchlists
from stockup_tui.widgets.detail import SymbolDetail
from stockup_tui.widgets.dialogs import (
    AddSymbolsScreen,
    AlertScreen,
    AlertsScreen,
    HelpScreen,
    PipelineScreen,
    QuitScreen,
)
from stockup_tui.widgets.events import EventLog, UILogHandler
from stockup_tui.widgets.health import HealthPane, problem
from stockup_tui.widgets.levels import LEVEL_STYLE, Level
from stockup_tui.widgets.quotes import QuotesTable
from stockup_tui.widgets.symbol_view import TAPE_ROWS, SymbolScreen
from stockup_tui.widgets.watchlist_dialogs import MoveScreen, WatchlistsScreen

log = logging.getLogger(__name__)

#: The columns of an exported table (`x`): the window's metrics at full precision.
EXPORT_FIELDS = (
    "symbol", "last", "last_trade_ms", "previous_close", "day_pct", "window_ms", "count",
    "volume", "first", "min", "max", "mean", "vwap", "change", "change_pct", "rate",
)  # fmt: skip
HEALTH_EVERY = 3  # refresh ticks between health pane redraws (it changes once a second)
MAX_FPS = 120
"""Frames a second Textual may draw (its default is 60, `TEXTUAL_FPS` overrides both). Frames
are drawn only when something changed; the cap is how soon after one frame the next may
follow. At 60, a key pressed while a refresh was being drawn waited up to 17 ms for the next
slot before its own frame could start."""


FREEZE_AFTER = 3.0  # seconds after start: see `freeze_startup_objects`


def freeze_startup_objects() -> None:
    """Takes everything alive now (modules, the engine, the widgets) out of the cyclic GC.

    A full collection walks every tracked object and holds the GIL, stopping the screen and
    the engine alike: with the app's ~10^5 long-lived objects it took 30-60 ms, every few
    seconds, and a key pressed then waited for it. Frozen objects are still freed by reference
    counting; the collector only skips them, so later full collections walk the objects made
    since (5-25 ms). Garbage is collected first, so that none is kept for good; done once, as
    an object frozen and later left in a reference cycle would never be freed.
    """
    gc.collect()
    gc.freeze()


class EngineView(Protocol):
    """What the screen needs from the engine (an `EngineHost`, or a frozen one in tests)."""

    @property
    def latest(self) -> Mapping[str, SymbolSnapshot]: ...

    @property
    def stats(self) -> PipelineStats: ...

    def start(self) -> None: ...

    def stop(self, timeout: float | None = None) -> bool:
        """Drains the engine; True once it has stopped (False: `timeout` passed first)."""
        ...

    def set_symbols(self, symbols: Iterable[str]) -> None: ...

    def stop_progress(self) -> str:
        """While `stop()` runs (on another thread): what it waits for."""
        ...

    @property
    def control_version(self) -> int:
        """Grows each time another screen of the deployment changed the watchlist."""
        ...

    @property
    def previous_close(self) -> Mapping[str, float]:
        """Previous closes known so far, for the day's change (empty: not known)."""
        ...

    def recent_trades(self, symbol: str, n: int = 20) -> list[tuple[int, float, float]]:
        """The symbol's latest trades, newest first: (t ms, price, volume)."""
        ...

    @property
    def symbols(self) -> list[str]:
        """The watchlist the feed follows now."""
        ...

    @property
    def lost_at_exit(self) -> Mapping[str, int]:
        """After `stop()`: what could not be delivered, by drop reason."""
        ...


class StockupApp(App[None]):
    """stockup-tui: live quotes, exact window metrics and pipeline health."""

    TITLE = "stockup-tui"
    CSS_PATH = "app.tcss"
    # Below 100 columns the side panes give their room to the quotes (app.tcss: `.-narrow`).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    # The footer shows these left to right and cuts what does not fit: help and quit first.
    BINDINGS = [
        Binding("question_mark", "help", "Keys"),
        Binding("q", "quit", "Quit"),
        Binding("a", "add_symbols", "Add"),
        Binding("d,delete", "remove_symbol", "Remove"),
        Binding("u", "undo_remove", "Undo", show=False),
        Binding("K,shift+up", "move_symbol(-1)", "Move up", show=False),
        Binding("J,shift+down", "move_symbol(1)", "Move down", show=False),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("s", "sort_next", "Sort"),
        Binding("r", "sort_reverse", "Reverse", show=False),
        Binding("o", "sort_watchlist", "Watchlist order", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("space,p", "pause", "Pause"),
        Binding("w", "next_window", "Window"),
        Binding("b", "alert", "Alert"),
        Binding("B", "alerts", "Alerts", show=False),
        Binding("v", "toggle_pane('detail')", "Detail", show=False),
        Binding("h", "toggle_pane('health')", "Health", show=False),
        Binding("P", "pipeline", "Pipeline", show=False),
        Binding("x", "export", "Export CSV", show=False),
        Binding("enter", "symbol_view", "Symbol", show=False),
        Binding("W", "watchlists", "Watchlists", show=False),
        Binding("m", "move_to_list", "Move to list", show=False),
        Binding("l", "toggle_pane('events')", "Log"),
        Binding("tab", "watchlist(1)", "Next list", show=False, priority=True),
        Binding("shift+tab", "watchlist(-1)", "Prev list", show=False, priority=True),
    ]

    # Longer names for the command palette (the footer keeps the short descriptions).
    PALETTE_TITLES = {
        "add_symbols": "Add symbols to the watchlist",
        "remove_symbol": "Remove the selected symbol",
        "undo_remove": "Undo the last removal",
        "move_symbol(-1)": "Move the selected symbol up",
        "move_symbol(1)": "Move the selected symbol down",
        "cursor(1)": "Cursor down",
        "cursor(-1)": "Cursor up",
        "sort_next": "Sort by the next column",
        "sort_reverse": "Reverse the sort order",
        "sort_watchlist": "Back to watchlist order",
        "filter": "Filter symbols",
        "pause": "Pause or resume the display",
        "next_window": "Switch the window (1m, 5m, ...)",
        "alert": "Set a price alert on the selected symbol",
        "alerts": "List and remove price alerts",
        "toggle_pane('detail')": "Toggle the detail pane",
        "toggle_pane('health')": "Toggle the pipeline health pane",
        "toggle_pane('events')": "Toggle the event log",
        "pipeline": "The Pipeline pane over the whole screen (scrollable)",
        "export": "Export the table (as shown) to a CSV file",
        "symbol_view": "The selected symbol full screen: chart with a time axis, tape",
        "watchlists": "Watchlists: switch, new, rename, delete",
        "move_to_list": "Move the selected symbol to another watchlist",
        "watchlist(1)": "Next watchlist",
        "watchlist(-1)": "Previous watchlist",
        "help": "Show every key",
    }

    def __init__(
        self,
        loaded: LoadedConfig,
        engine: EngineView,
        *,
        clock: Callable[[], float] = time.time,
        config_path: Path | None = None,
        save: bool = True,
    ) -> None:
        if "TEXTUAL_FPS" not in os.environ and hasattr(textual.screen, "UPDATE_PERIOD"):
            # Read when a screen creates its update timer, i.e. after this.
            # Textual declares it Final; the cap is lowered on purpose.
            textual.screen.UPDATE_PERIOD = min(textual.screen.UPDATE_PERIOD, 1 / MAX_FPS)  # type: ignore[misc]
        super().__init__()
        self.loaded = loaded
        self.settings = loaded.settings
        self.engine = engine
        self.clock = clock
        self.config_path = config_path or loaded.path or default_config_path()
        self.save_enabled = save
        self.watchlists = Watchlists.from_settings(
            self.settings.symbols,
            self.settings.watchlists,
            self.settings.ui.watchlist,
            self.settings.simulator.symbol_limit,
        )
        self.window_labels = [window_label(ms) for ms in self.settings.windows_ms]
        self.window_index = 0
        self.paused = False
        self.alerts: list[Alert] = [parse_alert(text) for text in self.settings.alerts]
        self._saved_theme = self.settings.ui.theme  # what the config file holds
        # Removals that `u` can undo, the last one last: (list, symbol, index, its alerts).
        self.removed: list[tuple[str, str, int, list[Alert]]] = []
        self.log_handler = UILogHandler()
        self._ticks = 0
        self._refresh_timer: Timer | None = None
        self._theme_errors: list[str] = []
        self._problem: tuple[Level, str] | None = None  # the status bar's warning, if any
        self.export_dir = Path.cwd()  # where `x` writes the table
        self._control_seen = 0  # the engine's control_version this screen has followed
        # Quitting: None, "draining" (the engine stops on a worker thread), or "abandoned".
        self.quitting: str | None = None
        self.exit_note: str | None = None  # said on the terminal once the screen is gone

    # -- layout ----------------------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Toasts carry text from outside (errors, names from the config file): plain text,
        one line per line of ours, never markup."""
        super().notify(
            "\n".join(safe(line) for line in str(message).split("\n")),
            title=safe(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def compose(self) -> ComposeResult:
        # A one-line status bar instead of Textual's Header: the Header lays out the whole
        # screen again whenever its subtitle changes (each window switch, pause, list change).
        yield Static(id="statusbar")
        yield Input(placeholder="filter symbols…  (Enter keeps it, Escape clears)", id="filter")
        with Horizontal(id="main"):
            yield QuotesTable(id="quotes")
            with Vertical(id="side"):
                yield SymbolDetail(id="detail")
                yield HealthPane(watchdog=self.settings.source.watchdog, id="health")
        events = EventLog(id="events")
        events.set_class(not self.settings.ui.show_log, "-hidden")
        yield events
        yield Footer()

    def on_mount(self) -> None:
        # Panes live on the default screen; keep references so that refreshes and actions
        # still reach them while a modal screen is on top.
        self.quotes = self.query_one(QuotesTable)
        self.detail = self.query_one(SymbolDetail)
        self.health = self.query_one(HealthPane)
        self.events = self.query_one(EventLog)
        self.filter_box = self.query_one("#filter", Input)
        self.statusbar = self.query_one("#statusbar", Static)
        self._load_themes()
        self.detail.border_title = "Detail"
        # A monitor's pane shows the whole deployment (status topic), not its own pipeline.
        self.health.border_title = "Cluster" if self.settings.role == Role.MONITOR else "Pipeline"
        self.events.border_title = "Events"
        logging.getLogger().addHandler(self.log_handler)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # `kill`: quit as `q` does (again: at once)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, lambda: self.call_later(self.action_quit))
        self.engine.start()
        self.engine.set_symbols(self.watchlists.symbols)
        self._update_subtitle()
        self.quotes.focus()
        self._refresh_timer = self.set_interval(self.settings.ui.refresh, self.refresh_panes)
        for err in self._theme_errors:
            self.event(f"theme file skipped: {err}", "WARNING")
        # Once the engine has built its state for the watchlist (a few refreshes in).
        self.set_timer(FREEZE_AFTER, freeze_startup_objects)

    def _load_themes(self) -> None:
        themes, errors = discover_themes([builtin_theme_dir(), user_theme_dir()])
        for theme in themes:
            self.register_theme(theme)
        self._theme_errors = errors
        wanted = self.settings.ui.theme
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self._theme_errors.append(f"theme {wanted!r} not found; using {self.theme}")

    # -- refresh (the only path from engine to screen) -------------------------------------

    def refresh_panes(self, *, tick: bool = True) -> None:
        """Hands the latest snapshots to the visible panes; `tick`: the timer's refresh, which
        also redraws the health pane every `HEALTH_EVERY` ticks (a key's refresh leaves it)."""
        if not self.is_running:  # shutting down: the panes are being removed
            return
        self._drain_log()
        if self.alerts:  # paused or not: a pause freezes the display, not the market
            self._check_alerts(self.engine.latest)
        if self.paused:
            return
        if tick:
            self._ticks += 1
        latest = self.engine.latest
        now_ms = int(self.clock() * 1000)
        quotes = self.quotes
        quotes.update_quotes(
            latest, self.watchlists.symbols, self.window_index, now_ms, self.engine.previous_close
        )
        if self.detail.display:
            self._show_detail(quotes.selected_symbol, latest, now_ms)
        if isinstance(self.screen, SymbolScreen):
            self._show_symbol(self.screen, latest, now_ms, tape=not tick or self._ticks % 3 == 1)
        health = self.health
        if tick and self._ticks % HEALTH_EVERY == 1:
            stats = self.engine.stats
            if health.display:
                health.update_health(stats)
            if isinstance(self.screen, PipelineScreen):
                self.screen.pane.update_health(stats)
            if self.engine.control_version != self._control_seen:
                self._follow_other_screen()
            found = problem(stats, self.settings.source.watchdog)
            if found != self._problem:  # at every size: the pane may be hidden or scrolled
                self._problem = found
                self._update_subtitle()

    def refresh_now(self) -> None:
        """A refresh for a key press, in the key's own frame and with only what the key can
        change (not the health pane); the timer starts its period again, so a tick does not
        redo the same work just before that frame is drawn."""
        self.refresh_panes(tick=False)
        if self._refresh_timer is not None:
            self._refresh_timer.reset()

    def _drain_log(self) -> None:
        records = self.log_handler.drain()
        if records:
            events = self.events
            for level, text, at in records:
                events.add_event(level, text, at)

    def event(self, text: str, level: str = "INFO") -> None:
        """A line in the event log. Lines of ours quote names and paths from outside (a
        watchlist, the directory an export went to): shown as text, secrets masked."""
        self.events.add_event(level, safe(text), self.clock())

    def _show_detail(
        self, symbol: str | None, latest: Mapping[str, SymbolSnapshot], now_ms: int
    ) -> None:
        snapshot = latest.get(symbol) if symbol else None
        close = self.engine.previous_close.get(symbol) if symbol else None
        self.detail.update_detail(
            snapshot, self.window_index, symbol=symbol, now_ms=now_ms, previous_close=close
        )

    @on(QuotesTable.SymbolHighlighted)
    def _on_highlight(self, message: QuotesTable.SymbolHighlighted) -> None:
        if not self.is_running:  # a highlight queued while shutting down
            return
        self._show_detail(message.symbol, self.engine.latest, int(self.clock() * 1000))

    # -- watchlist edits ---------------------------------------------------------------------

    def _follow_other_screen(self) -> None:
        """Another screen (a monitor) changed the cluster's watchlist: the active list shows
        what the feed now follows."""
        self._control_seen = self.engine.control_version
        symbols = self.engine.symbols
        if symbols != self.watchlists.symbols:
            self.watchlists.lists[self.watchlists.active] = list(symbols)
            self._save()
            self._update_subtitle()
            self.event(f"watchlist changed on another screen: {', '.join(symbols) or 'empty'}")

    def _apply_watchlist(self, note: str | None) -> None:
        """Pushes the active list to the feed, saves it and tells the user (`note`: the event
        log line; None for a change the table itself shows, a move)."""
        self.engine.set_symbols(self.watchlists.symbols)
        self._save()
        self._update_subtitle()
        if note:
            self.event(note)
        self.refresh_now()

    def _save(self) -> None:
        if not self.save_enabled:
            return
        try:
            save_settings(self.config_path, self.watchlists.settings_updates())
        except OSError as exc:
            self.notify(f"could not save the watchlist: {exc}", severity="error")

    def action_add_symbols(self) -> None:
        def done(symbols: list[str] | None) -> None:
            if not symbols:
                return
            added, notes = self.watchlists.add(symbols)
            for note in notes:  # one per kind of refusal, also kept in the event log
                self.notify(note, severity="warning")
                self.event(note, "WARNING")
            if added:
                self._apply_watchlist(f"added {', '.join(added)} to {self.watchlists.active}")
                self.quotes.select_symbol(added[0])

        self.push_screen(AddSymbolsScreen(), done)

    def action_remove_symbol(self) -> None:
        symbol = self.quotes.selected_symbol
        if symbol is None:
            return
        index = self.watchlists.symbols.index(symbol) if symbol in self.watchlists.symbols else 0
        if self.watchlists.remove(symbol):
            gone = [a for a in self.alerts if a.symbol == symbol]
            if gone:
                self._set_alerts([a for a in self.alerts if a.symbol != symbol])
            self.removed = [*self.removed[-19:], (self.watchlists.active, symbol, index, gone)]
            self._apply_watchlist(f"removed {symbol} from {self.watchlists.active} (u: undo)")

    def action_undo_remove(self) -> None:
        if not self.removed:
            self.notify("nothing to undo")
            return
        name, symbol, index, alerts = self.removed.pop()
        if not self.watchlists.insert(symbol, index, name):
            self.notify(f"{symbol} cannot go back into {name}", severity="warning")
            return
        if alerts:
            self._set_alerts([*self.alerts, *alerts])
        self._apply_watchlist(f"{symbol} back in {name}")
        if name == self.watchlists.active:
            self.quotes.select_symbol(symbol)

    def action_move_symbol(self, step: int) -> None:
        quotes = self.quotes
        symbol = quotes.selected_symbol
        if symbol and self.watchlists.move(symbol, step):
            quotes.sort_by(None)
            self._apply_watchlist(None)  # the row moves before the user's eyes
            quotes.select_symbol(symbol)

    def action_watchlists(self) -> None:
        def done(notes: list[str] | None) -> None:
            if notes:
                for note in notes[:-1]:
                    self.event(note)
                self._apply_watchlist(notes[-1])

        self.push_screen(WatchlistsScreen(self.watchlists), done)

    def action_move_to_list(self) -> None:
        symbol = self.quotes.selected_symbol
        targets = [n for n in self.watchlists.names if n != self.watchlists.active]
        if not symbol:
            return
        if not targets:
            self.notify("only one watchlist: W makes another")
            return

        def done(target: str | None) -> None:
            if not target:
                return
            try:
                self.watchlists.move_to(symbol, target)
            except ValueError as exc:
                self.notify(str(exc), severity="warning")
                return
            self._apply_watchlist(f"moved {symbol} from {self.watchlists.active} to {target}")

        self.push_screen(MoveScreen(symbol, targets), done)

    def action_watchlist(self, step: int) -> None:
        if len(self.watchlists.names) < 2:
            self.notify("only one watchlist: W makes another")
            return
        name = self.watchlists.cycle(step)
        self.quotes.reset_widths()
        self._apply_watchlist(f"watchlist {name}: {len(self.watchlists.symbols)} symbols")

    # -- view --------------------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        quotes = self.quotes
        if step > 0:
            quotes.action_cursor_down()
        else:
            quotes.action_cursor_up()

    def action_sort_next(self) -> None:
        self.quotes.cycle_sort()
        self.refresh_now()

    def action_sort_reverse(self) -> None:
        self.quotes.reverse_sort()
        self.refresh_now()

    def action_sort_watchlist(self) -> None:
        self.quotes.sort_by(None)
        self.refresh_now()

    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("-visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.quotes.set_filter(event.value)
        self.refresh_now()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.quotes.focus()

    def on_key(self, event: events.Key) -> None:
        """Escape in the filter box, or on the table while a filter is set, clears it."""
        box = self.filter_box
        if event.key == "escape" and (box.has_focus or (self.quotes.has_focus and box.value)):
            box.value = ""
            box.remove_class("-visible")
            self.quotes.focus()
            event.stop()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self._update_subtitle()
        self.event("display paused" if self.paused else "display resumed")

    def action_next_window(self) -> None:
        self.window_index = (self.window_index + 1) % len(self.window_labels)
        self._update_subtitle()
        self.refresh_now()

    def action_toggle_pane(self, pane: str) -> None:
        widget = {"detail": self.detail, "health": self.health, "events": self.events}[pane]
        widget.toggle_class("-hidden")  # app.tcss: display none; hidden panes skip refreshes

    # Keys that are not bindings of the app (the table's own, the mouse), for the help.
    OTHER_KEYS = (
        ("↑ / ↓", "Previous / next symbol"),
        ("pgup / pgdn", "A page up / down"),
        ("home / end", "First / last symbol"),
        ("enter", "In the filter box: keep the filter and return to the table"),
        ("esc", "Clear the filter (in the box or on the table); close a dialog"),
        ("click", "On a row: select it; on a column header: sort by it (again: reverse)"),
        ("wheel", "Scroll the table or the pane under the mouse"),
        ("^p", "Command palette: every action by name"),
    )

    def action_export(self) -> None:
        """The table as shown (filter, order, window) to `stockup-<list>-<time>.csv` in the
        directory the app was started from."""
        rows = self.quotes.export_rows()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.watchlists.active)
        path = self.export_dir / f"stockup-{name}-{stamp}.csv"
        try:
            with path.open("x", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=EXPORT_FIELDS)
                writer.writeheader()  # symbols start with a letter or digit: never a formula
                writer.writerows(rows)
        except OSError as exc:
            self.notify(f"could not export: {exc}", severity="error")
            return
        self.notify(f"{len(rows)} rows written to {path}")
        self.event(f"exported {len(rows)} rows to {path}")

    def action_symbol_view(self) -> None:
        symbol = self.quotes.selected_symbol
        if not symbol:
            return
        screen = SymbolScreen(symbol)
        self.push_screen(screen)
        self.call_after_refresh(
            lambda: self._show_symbol(screen, self.engine.latest, int(self.clock() * 1000))
        )

    def _show_symbol(
        self,
        screen: SymbolScreen,
        latest: Mapping[str, SymbolSnapshot],
        now_ms: int,
        tape: bool = True,
    ) -> None:
        symbol = screen.symbol
        trades = self.engine.recent_trades(symbol, TAPE_ROWS) if tape else screen.trades
        screen.trades = trades
        screen.show(
            latest.get(symbol),
            self.window_index,
            now_ms,
            self.engine.previous_close.get(symbol),
            trades,
        )

    def action_pipeline(self) -> None:
        self.push_screen(
            PipelineScreen(
                self.settings.source.watchdog, self.engine.stats, self.health.border_title or ""
            )
        )

    def action_help(self) -> None:
        rows = [
            (self._keys_shown(b), self.PALETTE_TITLES.get(b.action, b.description))
            for b in self._help_bindings()
        ]
        self.push_screen(HelpScreen([*rows, *self.OTHER_KEYS]))

    def _keys_shown(self, binding: Binding) -> str:
        """`d / del`, `/`, `?`: every key of a binding, as the footer writes one."""
        return " / ".join(
            self.get_key_display(replace(binding, key=key.strip()))
            for key in binding.key.split(",")
        )

    def _help_bindings(self) -> list[Binding]:
        return [b for b in self.BINDINGS if isinstance(b, Binding)]

    def _update_subtitle(self) -> None:
        state = "  ⏸ PAUSED" if self.paused else ""
        sub_title = (
            f"{self.watchlists.active} · {len(self.watchlists.symbols)} symbols · "
            f"window {self.window_labels[self.window_index]}{state}"
        )
        # Set without the reactive's side effect: assigning `App.sub_title` repaints the whole
        # screen (for a Header, which this app does not have), which made a window switch cost
        # a full-screen render. The status bar below is the only place it shows.
        self.set_reactive(App.sub_title, sub_title)
        # The watchlist's name comes from the config file: plain text, never markup. A problem
        # of the pipeline comes right after the title, where no width cuts it off.
        parts: list[Content | tuple[str, str] | str] = [(self.title, "bold"), " · "]
        if self._problem is not None:
            level, text = self._problem
            parts += [Content.styled(f"● {text}", LEVEL_STYLE[level]), " · "]
        parts.append(printable(self.sub_title))
        self.statusbar.update(Content.assemble(*parts), layout=False)

    # -- alerts ------------------------------------------------------------------------------

    def action_alert(self) -> None:
        symbol = self.quotes.selected_symbol
        if not symbol:
            self.notify("select a symbol first", severity="warning")
            return
        snap = self.engine.latest.get(symbol)

        def done(alert: Alert | None) -> None:
            if alert is not None:
                self._set_alerts([*self.alerts, alert])
                self.event(f"alert set: {alert}")

        self.push_screen(AlertScreen(symbol, snap.last_price if snap else None), done)

    def action_alerts(self) -> None:
        def done(kept: list[Alert] | None) -> None:
            if kept is not None and kept != self.alerts:
                for alert in self.alerts:
                    if alert not in kept:
                        self.event(f"alert removed: {alert}")
                self._set_alerts(kept)

        self.push_screen(AlertsScreen(self.alerts), done)

    def _set_alerts(self, alerts: list[Alert]) -> None:
        """The alerts in force, kept in the config file."""
        self.alerts = alerts
        if self.save_enabled:
            try:
                save_settings(self.config_path, {"alerts": [str(a) for a in alerts]})
            except OSError as exc:
                self.notify(f"could not save the alerts: {exc}", severity="error")

    def _check_alerts(self, latest: Mapping[str, SymbolSnapshot]) -> None:
        done = fired(self.alerts, latest)
        for alert in done:
            last = latest[alert.symbol].last_price
            text = f"{alert.symbol} is {alert.direction} {alert.price:g}: last {last:g}"
            self.notify(text, title="Price alert", severity="warning", timeout=10)
            self.event(f"ALERT {text}", "WARNING")
            if self.settings.ui.bell:
                self.bell()
        if done:
            self._set_alerts([a for a in self.alerts if a not in done])

    # -- palette, theme, quit ----------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self._help_bindings():
            if b.action == "quit":
                continue  # the system commands already offer Quit
            title = self.PALETTE_TITLES.get(b.action, b.description)
            yield SystemCommand(
                title, f"key: {b.key_display or b.key}", lambda a=b.action: self.run_action(a)
            )

    def watch_theme(self, theme: str) -> None:
        if self.save_enabled and theme != self._saved_theme:
            self._saved_theme = theme
            try:
                save_settings(self.config_path, {"ui.theme": theme})
            except OSError as exc:
                self.notify(f"could not save the theme: {exc}", severity="error")

    async def action_quit(self) -> None:
        """Drains the engine on a worker thread under a screen that says what it waits for;
        quitting again (or `stop_timeout`) abandons what is left (exit code 3)."""
        if self.quitting is None:
            self.quitting = "draining"
            bound = self.settings.stop_timeout
            self.push_screen(QuitScreen(self.engine.stop_progress, bound, time.monotonic))
            self.set_timer(bound, lambda: self._abandon(f"gave up after {bound:g}s"))
            self.run_worker(self._drain, thread=True, group="quit")
        elif self.quitting == "draining":
            self._abandon("abandoned")

    def _drain(self) -> None:
        self.engine.stop()  # as long as it takes: the timer set in action_quit bounds the wait
        self.call_from_thread(self._drained)

    def _drained(self) -> None:
        if self.quitting != "draining":
            return
        lost = self.engine.lost_at_exit
        if lost:
            self.exit_note = f"stockup-tui: stopped, but lost at exit: {describe_losses(lost)}"
        self.exit(return_code=exits.LOST if lost else 0)

    def _abandon(self, why: str) -> None:
        if self.quitting != "draining":
            return
        self.quitting = "abandoned"
        progress = self.engine.stop_progress()
        self.exit_note = f"stockup-tui: {why} while {progress}: that data is lost"
        self.exit(return_code=exits.LOST)

    def on_unmount(self) -> None:
        logging.getLogger().removeHandler(self.log_handler)
        if self.quitting is None:  # closed some other way: drain here, within the bound
            self.engine.stop(self.settings.stop_timeout)
