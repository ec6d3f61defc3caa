"""Watchlist dialogs: the lists (switch, new, rename, delete) and moving a symbol to another.

They edit the app's `Watchlists` in place and dismiss with what changed; the app saves the file
and re-subscribes the feed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from stockup_tui.untrusted import printable
from stockup_tui.watchlists import MAIN, Watchlists
from stockup_tui.widgets.dialogs import Prompt


class NameScreen(Prompt[str]):
    """A name for a watchlist, checked as you type by `check` (ValueError: why not)."""

    hint = "1-64 characters; Enter accepts, Escape cancels."

    def __init__(self, title: str, check: Callable[[str], str], value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.check = check
        self.value = value

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).value = self.value

    def on_input_changed(self, event: Input.Changed) -> None:
        try:
            self.check(event.value)
        except ValueError as exc:
            self.show_message(str(exc), error=True)
        else:
            self.show_message(self.hint, error=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(self.check(event.value))
        except ValueError as exc:
            self.show_message(str(exc), error=True)


class WatchlistsScreen(ModalScreen[list[str]]):
    """The watchlists: Enter switches to the highlighted one, n makes a new one, r renames and
    d deletes it (d twice: a list is not lost to one key). Edits `lists` in place; dismisses
    with the event-log lines of what changed (the app saves and re-subscribes)."""

    BINDINGS = [
        Binding("escape,W,q", "close", "Close"),
        Binding("n", "new", "New"),
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def __init__(self, lists: Watchlists) -> None:
        super().__init__()
        self.lists = lists
        self.notes: list[str] = []
        self.armed: str | None = None  # the list a first `d` asked to delete

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Watchlists", classes="title")
            yield OptionList(id="lists")
            yield Static(id="lists-message", classes="message", markup=False)

    def on_mount(self) -> None:
        self._show()
        self.say("Enter switches · n new · r rename · d delete · Escape closes")

    def _show(self) -> None:
        options = self.query_one("#lists", OptionList)
        names = self.lists.names
        options.clear_options()
        options.add_options(
            Option(
                Content(printable(f"{'▸' if n == self.lists.active else ' '} {n}  ({len(s)})")),
                id=n,
            )
            for n, s in self.lists.lists.items()
        )
        options.highlighted = names.index(self.lists.active)

    def say(self, text: str, error: bool = False) -> None:
        msg = self.query_one("#lists-message", Static)
        msg.update(Content(printable(text)))
        msg.set_class(error, "-error")

    def _highlighted(self) -> str:
        options = self.query_one("#lists", OptionList)
        index = options.highlighted or 0
        return self.lists.names[index]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        name = event.option.id or MAIN
        if name != self.lists.active:
            self.lists.active = name
            self.notes.append(f"watchlist {name}: {len(self.lists.symbols)} symbols")
        self.action_close()

    def action_new(self) -> None:
        def done(name: str | None) -> None:
            if name:
                self.lists.create(name)
                self.notes.append(f"new watchlist {name}")
                self._show()

        self.app.push_screen(NameScreen("New watchlist", self.lists.check_name), done)

    def action_rename(self) -> None:
        old = self._highlighted()
        if old == MAIN:
            self.say("'main' cannot be renamed: it is the symbols setting", error=True)
            return

        def done(new: str | None) -> None:
            if new:
                self.lists.rename(old, new)
                self.notes.append(f"watchlist {old} renamed to {new}")
                self._show()

        self.app.push_screen(NameScreen(f"Rename {old}", self.lists.check_name, old), done)

    def action_delete(self) -> None:
        name = self._highlighted()
        if name == MAIN:
            self.say("'main' cannot be deleted: it is the symbols setting", error=True)
            return
        if self.armed != name:
            self.armed = name
            n = len(self.lists.lists[name])
            self.say(f"d again deletes {name} and its {n} symbols", error=True)
            return
        self.armed = None
        symbols = self.lists.delete(name)
        self.notes.append(f"watchlist {name} deleted ({', '.join(symbols) or 'empty'})")
        self._show()
        self.say(f"{name} deleted")

    def action_close(self) -> None:
        self.dismiss(self.notes)


class MoveScreen(ModalScreen[str]):
    """The lists `symbol` can move to; Enter moves it there (dismisses with the target)."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Cancel")]

    def __init__(self, symbol: str, targets: Iterable[str]) -> None:
        super().__init__()
        self.symbol = symbol
        self.targets = list(targets)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(printable(f"Move {self.symbol} to"), classes="title", markup=False)
            yield OptionList(*(Option(Content(printable(t)), id=t) for t in self.targets))
            yield Static("Enter moves it; Escape cancels.", classes="message", markup=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
