"""Modal prompts: add symbols, set and list price alerts, the key help, the full-screen
Pipeline pane and quitting (the watchlist dialogs are in `watchlist_dialogs.py`).

Each prompt validates as you type and says what is wrong in plain words; Enter accepts only
valid input, Escape cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from stockup_tui.alerts import Alert, parse_level
from stockup_tui.engine.stats import PipelineStats
from stockup_tui.untrusted import printable
from stockup_tui.watchlists import parse_symbols
from stockup_tui.widgets.health import HealthPane

_R = TypeVar("_R")


class Prompt(ModalScreen[_R]):
    """A titled single-line prompt with a message line under the input; dismisses with an `_R`,
    or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    title_text = ""
    placeholder = ""
    hint = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="title")
            yield Input(placeholder=self.placeholder, id="prompt-input")
            yield Static(self.hint, classes="message", id="prompt-message", markup=False)

    def show_message(self, text: str, error: bool) -> None:
        """Shows `text` as plain text: it quotes what was typed (markup there is just text)."""
        msg = self.query_one("#prompt-message", Static)
        msg.update(Content("\n".join(printable(line) for line in text.split("\n"))))
        msg.set_class(error, "-error")

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class AddSymbolsScreen(Prompt[list[str]]):
    """Returns the list of valid symbols typed (one or several), or None."""

    title_text = "Add symbols"
    placeholder = "AAPL, MSFT, BINANCE:BTCUSDT"
    hint = "One or several, separated by commas or spaces. Enter adds, Escape cancels."

    def on_input_changed(self, event: Input.Changed) -> None:
        if not event.value.strip():
            self.show_message(self.hint, error=False)
            return
        valid, errors = parse_symbols(event.value)
        if errors:
            self.show_message("\n".join(errors), error=True)
        else:
            self.show_message(f"Will add: {', '.join(valid)}", error=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        valid, errors = parse_symbols(event.value)
        if errors:
            self.show_message("\n".join(errors), error=True)
            return
        self.dismiss(valid)


class AlertScreen(Prompt[Alert]):
    """Returns the `Alert` typed for the selected symbol, or None (rule: `stockup_tui.alerts`)."""

    placeholder = "above 190.5"
    hint = (
        "A price; 'above'/'below' optional. The alert fires once, the first time the last "
        "price reaches it; B lists the alerts."
    )

    def __init__(self, symbol: str, last: float | None) -> None:
        super().__init__()
        self.symbol = symbol
        self.last = last
        shown = f" (last {last:g})" if last is not None else ""
        self.title_text = f"Price alert for {symbol}{shown}"

    def on_input_changed(self, event: Input.Changed) -> None:
        if not event.value.strip():
            self.show_message(self.hint, error=False)
            return
        try:
            alert = parse_level(self.symbol, event.value, self.last)
        except ValueError as exc:
            self.show_message(str(exc), error=True)
        else:
            self.show_message(f"Will fire when {alert}", error=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            alert = parse_level(self.symbol, event.value, self.last)
        except ValueError as exc:
            self.show_message(str(exc), error=True)
            return
        self.dismiss(alert)


class AlertsScreen(ModalScreen[list[Alert]]):
    """The alerts set, one a line: Delete (or d) removes the highlighted one; Escape returns
    the alerts left."""

    BINDINGS = [
        Binding("escape,B,q", "close", "Close"),
        Binding("d,delete", "remove", "Remove"),
    ]

    def __init__(self, alerts: Iterable[Alert]) -> None:
        super().__init__()
        self.alerts = list(alerts)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Price alerts", classes="title")
            yield OptionList(*self._options(), id="alerts-list")
            yield Static(
                "d or Delete removes the highlighted alert; Escape closes. b on a symbol sets one.",
                classes="message",
                markup=False,
            )

    def _options(self) -> list[Option]:
        if not self.alerts:
            return [Option(Content("no alerts set"), disabled=True)]
        return [Option(Content(printable(str(a)))) for a in self.alerts]

    def action_remove(self) -> None:
        options = self.query_one("#alerts-list", OptionList)
        index = options.highlighted
        if index is None or not self.alerts:
            return
        del self.alerts[index]
        options.clear_options()
        options.add_options(self._options())
        if self.alerts:
            options.highlighted = min(index, len(self.alerts) - 1)

    def action_close(self) -> None:
        self.dismiss(self.alerts)


class HelpScreen(ModalScreen[None]):
    """Every key of the app, generated from its bindings so it cannot go stale."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close"),
        Binding("q", "dismiss", "Close"),
    ]

    def __init__(self, rows: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = list(rows)

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.rows), default=4)
        lines = [
            Content.assemble((f"{key:<{width}}", "bold"), f"  {text}") for key, text in self.rows
        ]
        with Vertical(classes="dialog"):
            yield Label("Keys", classes="title")
            yield Static(Content("\n").join(lines), id="help-keys")
            yield Static(
                "Every action is also in the command palette (Ctrl+P). Escape closes.",
                classes="message",
            )


class QuitScreen(ModalScreen[None]):
    """Shown while the engine drains on quit: what it waits for, how long, how to abandon.

    `progress` is read a few times a second (any thread may be draining meanwhile); q, Ctrl+C
    or Ctrl+Q again runs the app's quit action, which abandons what is left."""

    BINDINGS = [
        Binding("q,ctrl+c,ctrl+q", "app.quit", "Quit now", priority=True),
    ]

    def __init__(self, progress: Callable[[], str], bound: float, clock: Callable[[], float]):
        super().__init__()
        self.progress = progress
        self.bound = bound
        self.clock = clock
        self.started = clock()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Quitting", classes="title")
            yield Static(id="quit-progress", markup=False)
            yield Static(
                "q or Ctrl+C again quits at once: what is still pending is then lost.",
                classes="message",
                markup=False,
            )

    def on_mount(self) -> None:
        self.show_progress()
        self.set_interval(0.25, self.show_progress)

    def show_progress(self) -> None:
        waited = self.clock() - self.started
        text = f"{self.progress()}… {waited:.0f}s (at most {self.bound:g}s)"
        self.query_one("#quit-progress", Static).update(Content(printable(text)))


class PipelineScreen(ModalScreen[None]):
    """The Pipeline pane over the whole screen, at any terminal size (the side pane is gone
    below 100 columns, and its lower sections are below the fold on smaller ones): arrows,
    PgUp/PgDn and Home/End scroll it; Escape (or P) closes it. The app feeds `pane`."""

    BINDINGS = [Binding("escape,P,q", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    PipelineScreen > HealthPane {
        border: round $secondary;
        border-title-color: $secondary;
        height: 1fr;
    }
    """

    def __init__(self, watchdog: float, stats: PipelineStats, title: str = "Pipeline") -> None:
        super().__init__()
        self.pane = HealthPane(watchdog=watchdog, id="pipeline-full")
        self.first = stats
        self.title_text = title

    def compose(self) -> ComposeResult:
        self.pane.border_title = self.title_text
        self.pane.border_subtitle = "↑↓ PgUp PgDn scroll · Esc closes"
        yield self.pane

    def on_mount(self) -> None:
        self.pane.update_health(self.first)
        self.pane.focus()
