"""Named watchlists and the edits the keyboard makes to them (pure logic, no Textual).

`main` is the top-level `symbols` setting; other lists live under `[watchlists]`. The active list
is what the feed subscribes to. Every edit returns what changed so the screen can say so, and
`settings_updates()` gives the dotted keys to write back to the config file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stockup_tui.config import normalize_symbol

MAIN = "main"
_SPLIT = re.compile(r"[\s,;]+")


def parse_symbols(text: str) -> tuple[list[str], list[str]]:
    """Symbols from user input such as ``"aapl, MSFT BINANCE:BTCUSDT"``.

    Returns (valid symbols, upper-cased, in order, without repeats; error messages).
    """
    valid: list[str] = []
    errors: list[str] = []
    for raw in _SPLIT.split(text.strip()):
        if not raw:
            continue
        try:
            sym = normalize_symbol(raw)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if sym not in valid:
            valid.append(sym)
    if not valid and not errors:
        errors.append("type one or more symbols, e.g. AAPL, MSFT")
    return valid, errors


@dataclass
class Watchlists:
    lists: dict[str, list[str]] = field(default_factory=lambda: {MAIN: []})
    active: str = MAIN
    limit: int = 50  # symbols per connection on Finnhub's free plan

    @classmethod
    def from_settings(
        cls, symbols: Sequence[str], others: Mapping[str, Sequence[str]], active: str, limit: int
    ) -> Watchlists:
        lists = {MAIN: list(symbols), **{k: list(v) for k, v in others.items()}}
        return cls(lists=lists, active=active if active in lists else MAIN, limit=limit)

    @property
    def symbols(self) -> list[str]:
        return self.lists[self.active]

    @property
    def names(self) -> list[str]:
        return list(self.lists)

    def cycle(self, step: int = 1) -> str:
        names = self.names
        self.active = names[(names.index(self.active) + step) % len(names)]
        return self.active

    def add(self, new: Sequence[str]) -> tuple[list[str], list[str]]:
        """Adds symbols to the active list; returns (added, one message per kind of refusal:
        a paste of 200 symbols past the limit is one message, not 150)."""
        current = self.symbols
        added: list[str] = []
        present: list[str] = []
        over: list[str] = []
        for sym in new:
            if sym in current:
                present.append(sym)
            elif len(current) >= self.limit:
                over.append(sym)
            else:
                current.append(sym)
                added.append(sym)
        notes = []
        if present:
            notes.append(f"already in the watchlist: {_some(present)}")
        if over:
            notes.append(
                f"{len(over)} not added ({_some(over)}): the watchlist holds at most "
                f"{self.limit} symbols"
            )
        return added, notes

    def check_name(self, name: str) -> str:
        """A new list's name, stripped; ValueError says why it cannot be one (the config
        file's rule: 1-64 printable characters, not `main`, not taken)."""
        name = name.strip()
        if not name:
            raise ValueError("type a name for the list")
        if name == MAIN:
            raise ValueError("'main' is the top-level symbols list")
        if not name.isprintable() or len(name) > 64:
            raise ValueError("at most 64 printable characters")
        if name in self.lists:
            raise ValueError(f"there is a list named {name} already")
        return name

    def create(self, name: str) -> str:
        """A new empty list, made active; returns its name (ValueError: see `check_name`)."""
        name = self.check_name(name)
        self.lists[name] = []
        self.active = name
        return name

    def rename(self, old: str, new: str) -> str:
        """Renames a list in place (its position in the cycle is kept); not `main`."""
        if old == MAIN:
            raise ValueError("'main' cannot be renamed (it is the symbols setting)")
        new = self.check_name(new)
        self.lists = {new if k == old else k: v for k, v in self.lists.items()}
        if self.active == old:
            self.active = new
        return new

    def delete(self, name: str) -> list[str]:
        """Deletes a list (not `main`); returns its symbols. The active one becomes `main`."""
        if name == MAIN:
            raise ValueError("'main' cannot be deleted (it is the symbols setting)")
        symbols = self.lists.pop(name)
        if self.active == name:
            self.active = MAIN
        return symbols

    def move_to(self, symbol: str, target: str) -> None:
        """Moves `symbol` from the active list to the end of `target`; ValueError says why not."""
        if target == self.active:
            raise ValueError(f"{symbol} is in {target} already")
        dest = self.lists[target]
        if symbol in dest:
            raise ValueError(f"{symbol} is in {target} already")
        if len(dest) >= self.limit:
            raise ValueError(f"{target} holds at most {self.limit} symbols")
        self.symbols.remove(symbol)
        dest.append(symbol)

    def insert(self, symbol: str, index: int, name: str | None = None) -> bool:
        """Puts `symbol` back at `index` of list `name` (default: the active one), as an undone
        removal does; False if it is there already, the list is full or gone."""
        current = self.lists.get(self.active if name is None else name)
        if current is None or symbol in current or len(current) >= self.limit:
            return False
        current.insert(min(index, len(current)), symbol)
        return True

    def remove(self, symbol: str) -> bool:
        try:
            self.symbols.remove(symbol)
        except ValueError:
            return False
        return True

    def move(self, symbol: str, step: int) -> bool:
        """Moves `symbol` up (step -1) or down (+1); False at either end."""
        current = self.symbols
        i = current.index(symbol)
        j = i + step
        if not 0 <= j < len(current):
            return False
        current[i], current[j] = current[j], current[i]
        return True

    def settings_updates(self) -> dict[str, object]:
        updates: dict[str, object] = {
            "symbols": list(self.lists[MAIN]),
            "ui.watchlist": self.active,
        }
        # Always written (a deleted last list must go from the file too).
        updates["watchlists"] = {k: list(v) for k, v in self.lists.items() if k != MAIN}
        return updates


def _some(symbols: Sequence[str], shown: int = 5) -> str:
    """`A, B, C` or `A, B, C, D, E and 145 more`."""
    head = ", ".join(symbols[:shown])
    return head if len(symbols) <= shown else f"{head} and {len(symbols) - shown} more"
