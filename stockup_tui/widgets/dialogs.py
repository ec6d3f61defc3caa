"""Modal prompts: add symbols, set a price alert, the key help, and quitting.

Each prompt validates as you type and says what is wrong in plain words; Enter accepts only
valid input, Escape cancels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from stockup_tui.untrusted import printable
from stockup_tui.watchlists import parse_symbols


class _Prompt(ModalScreen):
    """A titled single-line prompt with a message line under the input."""

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


class AddSymbolsScreen(_Prompt):
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


@dataclass(frozen=True)
class AlertSpec:
    direction: str  # "above" | "below"
    price: float


_ALERT = re.compile(r"^\s*(above|below|>|<)?\s*([0-9]*\.?[0-9]+)\s*$", re.IGNORECASE)


def parse_alert(text: str, last: float | None) -> AlertSpec:
    """``"190.5"``, ``"above 190.5"``, ``"> 190.5"``, ``"below 180"``; without a direction the
    alert fires when the price crosses from where it is now. Raises ValueError with a message."""
    m = _ALERT.match(text)
    if not m:
        raise ValueError("type a price, optionally with above/below, e.g. 'above 190.5'")
    word, number = m.group(1), float(m.group(2))
    if number <= 0:
        raise ValueError("the price must be positive")
    if word:
        direction = "above" if word.lower() in ("above", ">") else "below"
    elif last is None:
        raise ValueError("no price yet for this symbol: say 'above' or 'below'")
    else:
        direction = "above" if number > last else "below"
    return AlertSpec(direction, number)


class AlertScreen(_Prompt):
    """Returns an AlertSpec for the selected symbol, or None."""

    placeholder = "above 190.5"
    hint = "A price; 'above'/'below' optional. The alert fires once when the price crosses it."

    def __init__(self, symbol: str, last: float | None) -> None:
        super().__init__()
        self.symbol = symbol
        self.last = last
        shown = f" (last {last:g})" if last is not None else ""
        self.title_text = f"Price alert for {symbol}{shown}"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            spec = parse_alert(event.value, self.last)
        except ValueError as exc:
            self.show_message(str(exc), error=True)
            return
        self.dismiss(spec)


class HelpScreen(ModalScreen):
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


class QuitScreen(ModalScreen):
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
