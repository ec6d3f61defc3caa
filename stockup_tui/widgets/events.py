"""The event log pane, and the logging handler that feeds it from any thread.

The engine logs from its own thread; a Textual widget may only be touched from the app's thread.
`UILogHandler` therefore never touches the screen: it appends to a bounded deque (lock-free in
CPython, so a logging call never waits on the UI) and the app drains it on a timer into
`EventLog.add_event`. A burst of logs can only cost the oldest queued lines, never memory.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from rich.style import Style
from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from stockup_tui.untrusted import safe

# (level_name, message, created epoch seconds), as produced by UILogHandler.
LogItem = tuple[str, str, float]


class LogEvent(NamedTuple):
    """One event kept by `EventLog`; a plain tuple too, so `level, text, at = event` works."""

    level: str
    text: str
    at: float  # epoch seconds


MESSAGE_CHARS = 1000  # a queued message is cut here: bounded memory even for huge reprs
_SHORT_LEVEL = {"WARNING": "WARN", "CRITICAL": "CRIT", "FATAL": "CRIT"}
# Level -> (theme colour variable or None for the default text colour, bold).
_LEVEL_LOOK: dict[str, tuple[str | None, bool]] = {
    "DEBUG": (None, False),
    "INFO": (None, False),
    "WARN": ("warning", False),
    "ERROR": ("error", False),
    "CRIT": ("error", True),
    "ALERT": ("accent", True),
}


def short_level(level: str) -> str:
    """Five columns at most, so messages line up: WARNING -> WARN, CRITICAL -> CRIT."""
    up = level.upper()
    return _SHORT_LEVEL.get(up, up)


def format_event(level: str, text: str, at: float) -> str:
    """The plain line `HH:MM:SS LEVEL text` (local time), flattened to a single line."""
    clock = time.strftime("%H:%M:%S", time.localtime(at))
    flat = " ↵ ".join(part.strip() for part in text.strip().splitlines()) or "-"
    return f"{clock} {short_level(level):<5} {flat}"


class EventLog(RichLog):
    """Recent events (reconnects, errors, symbol changes, alerts), newest at the bottom.

    It keeps its own bounded history of events, so it can repaint in the new colours when the
    theme changes and so that events added while it is hidden (never laid out) are kept without
    growing an unbounded backlog of pending renders.
    """

    DEFAULT_CSS = """
    EventLog {
        height: 8;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(
        self,
        *,
        max_lines: int = 500,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        """`max_lines`: how many events are kept (one event is always one line)."""
        super().__init__(
            max_lines=max_lines,
            min_width=20,
            wrap=False,
            highlight=False,
            markup=False,
            auto_scroll=True,
            name=name,
            id=id,
            classes=classes,
            disabled=disabled,
        )
        self._events: deque[LogEvent] = deque(maxlen=max_lines)
        self._palette: dict[str, str] = {}
        self._laid_out = False

    @property
    def events(self) -> tuple[LogEvent, ...]:
        """The kept events, oldest first (`text` as given, without time and level)."""
        return tuple(self._events)

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def on_resize(self, event: Resize) -> None:
        if not self._laid_out and self.size.width:
            self._laid_out = True
            self._repaint()

    def add_event(self, level: str, text: str, at: float | None = None) -> None:
        """Appends `HH:MM:SS LEVEL text`, coloured by level; `at` defaults to now."""
        item = LogEvent(level, text, time.time() if at is None else at)
        self._events.append(item)
        if self._laid_out:
            self.write(self._line(*item))

    def _theme_changed(self) -> None:
        self._palette = {}
        if self._laid_out:
            self._repaint()

    def _repaint(self) -> None:
        self.clear()
        for item in self._events:
            self.write(self._line(*item))

    def _colour(self, key: str) -> str | None:
        if not self._palette:
            try:
                self._palette = self.app.current_theme.to_color_system().generate()
            except Exception:  # no usable theme: plain text is still a log
                self._palette = {"": ""}
        value = self._palette.get(key)
        return value if value and value.startswith("#") else None

    def _line(self, level: str, text: str, at: float) -> Text:
        short = short_level(level)
        colour_key, bold = _LEVEL_LOOK.get(short, (None, False))
        colour = self._colour(colour_key) if colour_key else None
        clock, _, rest = format_event(level, text, at).partition(" ")
        body = rest[len(short) :].lstrip() if rest.startswith(short) else rest
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(clock + " ", Style(dim=True))
        line.append(f"{short:<5} ", Style(color=colour, bold=True))
        line.append(body, Style(dim=True) if short == "DEBUG" else Style(color=colour, bold=bold))
        return line


#: The logger of `engine.drops`: its INFO lines are the routine drops.
ROUTINE_DROPS_LOGGER = "stockup_tui.drops"


class UILogHandler(logging.Handler):
    """Forwards log records to the UI without ever raising or blocking the logging thread.

    Records pass from loggers under `own_prefix` (``stockup_tui.*``) at `own_level` and up, and
    from everyone else (websockets, asyncio, ...) at `other_level` and up. Without a `callback`
    they are queued (bounded, oldest dropped first; `lost` counts those) for `drain()`; with one,
    it is called as ``callback(level_name, message, created)`` on the logging thread — it must be
    thread-safe itself (e.g. wrap `app.call_from_thread`). Messages are forwarded as one line of
    printable text with secrets masked (`untrusted.safe`).
    """

    def __init__(
        self,
        callback: Callable[[str, str, float], object] | None = None,
        *,
        capacity: int = 1000,
        own_prefix: str = "stockup_tui",
        own_level: int = logging.INFO,
        other_level: int = logging.WARNING,
    ) -> None:
        super().__init__(level=logging.NOTSET)
        self.callback = callback
        self.own_prefix = own_prefix
        self.own_level = own_level
        self.other_level = other_level
        self._queue: deque[LogItem] = deque(maxlen=capacity)
        self.lost = 0  # queued items pushed out by newer ones before a drain
        self.failures = 0  # records that could not be forwarded (bad args, failing callback)

    def accepts(self, record: logging.LogRecord) -> bool:
        """Whether the level threshold for the record's logger lets it through. Routine drops
        (the feed's resent trades, logged at INFO every 10 s) are left to the Drops pane: in
        the event log they were most of the lines."""
        name = record.name
        if name == ROUTINE_DROPS_LOGGER and record.levelno < logging.WARNING:
            return False
        own = name == self.own_prefix or name.startswith(self.own_prefix + ".")
        return record.levelno >= (self.own_level if own else self.other_level)

    def handle(self, record: logging.LogRecord) -> bool:
        """Like `Handler.handle` minus the handler lock: the deque is already thread-safe."""
        if not self.accepts(record):
            return False
        result = self.filter(record)
        if not result:
            return False
        if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter may swap the record
            record = result
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            item = (record.levelname, self.message_of(record), record.created)
            if self.callback is not None:
                self.callback(*item)
                return
            if len(self._queue) == self._queue.maxlen:
                self.lost += 1
            self._queue.append(item)
        except Exception:  # never let logging break the caller, nor print into the TUI
            self.failures += 1

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures += 1

    @staticmethod
    def message_of(record: logging.LogRecord) -> str:
        """The formatted message, plus the exception's one-line summary when logged with one."""
        try:
            msg = record.getMessage()
        except Exception:  # mismatched %-args: still show what was meant
            msg = f"{record.msg} {record.args!r}"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            summary = f"{type(exc).__name__}: {exc}"
            if summary not in msg:
                msg = f"{msg} ({summary})"
        # One line of plain text whatever the record carries (feed errors, URLs, symbols).
        return safe(msg, MESSAGE_CHARS)

    def drain(self) -> list[LogItem]:
        """Takes every queued record, oldest first; safe while other threads keep logging."""
        out: list[LogItem] = []
        pop = self._queue.popleft
        while True:
            try:
                out.append(pop())
            except IndexError:
                return out

    @property
    def pending(self) -> int:
        """Records queued and not drained yet (not `__len__`: an empty handler must stay truthy)."""
        return len(self._queue)
