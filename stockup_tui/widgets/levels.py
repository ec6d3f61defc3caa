"""Traffic-light levels and the label/value layout the health and cluster panes share.

Figures are judged into a `Level` by small pure functions; `styled` colours text from the theme
(`$success`, `$warning`, `$error`) and `row` lays label/value cells out in fixed columns so that
rows line up across sections.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from textual.content import Content

from stockup_tui.untrusted import safe

ERROR_CHARS = 160  # the full text is in the section's tooltip

LABEL_W = 8
VALUE_W = 11


class Level(IntEnum):
    """How worrying a figure is; ordered so that `max()` gives the worst of several."""

    IDLE = 0  # nothing to judge: no data yet, finished, or routine
    OK = 1
    WARN = 2
    BAD = 3


LEVEL_STYLE: dict[Level, str] = {
    Level.IDLE: "",
    Level.OK: "$success",
    Level.WARN: "$warning",
    Level.BAD: "$error",
}
DOT = {Level.IDLE: "○", Level.OK: "●", Level.WARN: "●", Level.BAD: "●"}


def worst(levels: Iterable[Level]) -> Level:
    """The most severe of `levels` (IDLE when there are none)."""
    return max(levels, default=Level.IDLE)


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """Errors can be multi-line tracebacks from outside; the pane shows one line of plain
    text of them, secrets masked."""
    return safe(" ".join(text.split()), limit)


Cell = tuple[str, str, Level]


def styled(text: str, level: Level) -> Content:
    style = LEVEL_STYLE[level]
    return Content.styled(text, style) if style else Content(text)


def header(title: str, level: Level, extra: str = "") -> Content:
    parts: list[Content | tuple[str, str] | str] = [
        styled(DOT[level], level),
        " ",
        (title, "bold"),
    ]
    if extra:
        parts += ["  ", (extra, "dim")]
    return Content.assemble(*parts)


def row(*cells: Cell) -> Content:
    """Label/value cells laid out in fixed columns so rows line up across sections."""
    parts: list[Content | tuple[str, str] | str] = []
    for i, (label, value, level) in enumerate(cells):
        last = i == len(cells) - 1
        parts.append((label.ljust(LABEL_W), "dim"))
        parts.append(styled(value if last else value.ljust(VALUE_W), level))
        if not last:
            parts.append(" ")
    return Content.assemble(*parts)


def section(header: Content, rows: Iterable[Content]) -> Content:
    return Content("\n").join([header, *rows])
