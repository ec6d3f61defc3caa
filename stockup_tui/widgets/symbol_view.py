"""One symbol over the whole screen (`Enter` on the table): the Detail pane's title, chart (with
a time axis) and every window's metrics, beside a tape of its latest trades.

The app feeds it on its refresh timer (`show`), as it feeds the panes; the tape is asked of the
engine then (one symbol, a few rows), never per trade.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.widgets.detail import SymbolDetail
from stockup_tui.widgets.format import fmt_price, fmt_volume

#: Trades on the tape.
TAPE_ROWS = 40
NO_TAPE = ["no trades in this process's windows", "(a monitor reads snapshots only)"]


def tape_lines(trades: Sequence[tuple[int, float, float]]) -> list[str]:
    """`14:03:07.125   189.93     100`, newest first."""
    out = []
    for t, price, volume in trades:
        clock = time.strftime("%H:%M:%S", time.localtime(t / 1000)) + f".{t % 1000:03d}"
        out.append(f"{clock}  {fmt_price(price):>10}  {fmt_volume(volume):>7}")
    return out


class SymbolScreen(Screen[None]):
    """The selected symbol, full screen; Escape (or Enter) returns to the table."""

    BINDINGS = [
        Binding("escape,enter,q", "app.pop_screen", "Back"),
        Binding("w", "app.next_window", "Window"),
    ]
    DEFAULT_CSS = """
    SymbolScreen #symbol-body { height: 1fr; }
    SymbolScreen #symbol-detail { width: 1fr; border: round $primary 50%; }
    SymbolScreen #tape-pane { width: 36; border: round $accent 50%; border-title-color: $accent; }
    SymbolScreen #tape { height: 1fr; }
    """

    def __init__(self, symbol: str) -> None:
        super().__init__()
        self.symbol = symbol
        self.detail = SymbolDetail(id="symbol-detail")
        self.tape = Static(id="tape", markup=False)  # kept: fed before it is mounted too
        self.tape_text = ""
        self.trades: Sequence[tuple[int, float, float]] = ()  # the tape's last answer

    def compose(self) -> ComposeResult:
        with Horizontal(id="symbol-body"):
            yield self.detail
            with Vertical(id="tape-pane") as pane:
                pane.border_title = "Trades"
                yield self.tape

    def on_mount(self) -> None:
        self.detail.border_title = self.symbol
        self.detail.border_subtitle = "w window · Esc back"

    def show(
        self,
        snapshot: SymbolSnapshot | None,
        window_index: int,
        now_ms: int,
        previous_close: float | None,
        trades: Sequence[tuple[int, float, float]],
    ) -> None:
        if self.app.screen is not self:  # closed meanwhile (a refresh queued before Escape)
            return
        self.detail.update_detail(
            snapshot, window_index, symbol=self.symbol, now_ms=now_ms, previous_close=previous_close
        )
        lines = tape_lines(trades) or [
            "no trades in this process's windows (a monitor",
            "has the snapshots only)",
        ]
        text = "\n".join(lines)
        if text != self.tape_text:
            self.tape_text = text
            self.tape.update(Content(text))
