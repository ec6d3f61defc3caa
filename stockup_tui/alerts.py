"""Price alerts: one rule, the same for the dialog, the config file and the check.

An alert ``AAPL above 190.5`` fires once, the first time the last price is at or above 190.5
(``below``: at or below). An alert whose condition already holds when it is set would fire at
once and say nothing new, so it is refused (the dialog says why); set without a direction, the
direction is the side the level lies on from the last price. Alerts are kept in the config file
(``alerts = ["AAPL above 190.5"]``) until they fire or are removed, and checked on every screen
refresh, paused or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stockup_tui.engine.model import SymbolSnapshot

_LEVEL = re.compile(r"^\s*(above|below|>|<)?\s*([0-9]*\.?[0-9]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Alert:
    symbol: str
    direction: str  # "above" | "below"
    price: float

    def __str__(self) -> str:
        """The form the config file keeps: ``AAPL above 190.5``."""
        return f"{self.symbol} {self.direction} {self.price:g}"

    def holds(self, last: float) -> bool:
        return last >= self.price if self.direction == "above" else last <= self.price


def parse_level(symbol: str, text: str, last: float | None) -> Alert:
    """``"190.5"``, ``"above 190.5"``, ``"> 190.5"``, ``"below 180"`` typed for `symbol`, whose
    last price is `last`; raises ValueError saying what is wrong (see the module docstring)."""
    m = _LEVEL.match(text)
    if not m:
        raise ValueError("type a price, optionally with above/below, e.g. 'above 190.5'")
    word, number = m.group(1), float(m.group(2))
    if number <= 0:
        raise ValueError("the price must be positive")
    if word:
        direction = "above" if word.lower() in ("above", ">") else "below"
    elif last is None:
        raise ValueError("no price yet for this symbol: say 'above' or 'below'")
    elif number == last:
        raise ValueError(f"the last price is {last:g} already")
    else:
        direction = "above" if number > last else "below"
    alert = Alert(symbol, direction, number)
    if last is not None and alert.holds(last):
        raise ValueError(
            f"{symbol} is {direction} {number:g} already (last {last:g}): it would fire at once"
        )
    return alert


def parse_alert(text: str) -> Alert:
    """One entry of the config file's `alerts`: ``"AAPL above 190.5"``; ValueError if not."""
    symbol, _, level = text.strip().partition(" ")
    if not symbol or not level.strip().lower().startswith(("above", "below")):
        raise ValueError(f"{text!r} is not an alert such as 'AAPL above 190.5'")
    return parse_level(symbol, level, None)


def fired(alerts: Iterable[Alert], latest: Mapping[str, SymbolSnapshot]) -> list[Alert]:
    """The alerts whose condition holds on the latest prices."""
    out = []
    for alert in alerts:
        snap = latest.get(alert.symbol)
        if snap is not None and snap.last_price is not None and alert.holds(snap.last_price):
            out.append(alert)
    return out
