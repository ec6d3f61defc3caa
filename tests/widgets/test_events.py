"""EventLog lines and limits; UILogHandler thresholds, thread-safety and failure handling."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from textual.app import App, ComposeResult

from stockup_tui.widgets.events import EventLog, UILogHandler, format_event, short_level

AT = time.mktime((2024, 5, 6, 9, 30, 15, 0, 0, -1))  # local 09:30:15


class LogApp(App[None]):
    def __init__(self, max_lines: int = 50, hidden: bool = False) -> None:
        super().__init__()
        self.max_lines = max_lines
        self.hidden = hidden

    def compose(self) -> ComposeResult:
        log = EventLog(id="events", max_lines=self.max_lines)
        log.display = not self.hidden
        yield log


def texts(log: EventLog) -> list[str]:
    return [strip.text.rstrip() for strip in log.lines]


def test_format_event() -> None:
    assert format_event("WARNING", "feed lost", AT) == "09:30:15 WARN  feed lost"
    assert format_event("info", "two\nlines ", AT) == "09:30:15 INFO  two ↵ lines"
    assert short_level("CRITICAL") == "CRIT"


async def test_add_event_writes_coloured_lines() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(EventLog)
        log.add_event("INFO", "subscribed AAPL", AT)
        log.add_event("ERROR", "sink failed", AT)
        await pilot.pause()
        assert texts(log) == ["09:30:15 INFO  subscribed AAPL", "09:30:15 ERROR sink failed"]
        error_colour = app.current_theme.to_color_system().generate()["error"]
        colours = {
            seg.style.color.triplet.hex.upper()
            for seg in log.lines[1]
            if seg.style and seg.style.color and seg.style.color.triplet
        }
        assert error_colour.upper() in colours
        log.add_event("INFO", "now")  # default time: no error
        assert len(log.events) == 3


async def test_max_lines_is_honoured() -> None:
    app = LogApp(max_lines=5)
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(EventLog)
        for i in range(12):
            log.add_event("INFO", f"event {i}", AT)
        await pilot.pause()
        assert len(log.lines) == 5
        assert texts(log)[0].endswith("event 7") and texts(log)[-1].endswith("event 11")
        assert [e.text for e in log.events] == [f"event {i}" for i in range(7, 12)]
        level, text, at = log.events[-1]
        assert (level, text, at) == ("INFO", "event 11", AT)


async def test_hidden_log_keeps_bounded_history_and_paints_when_shown() -> None:
    app = LogApp(max_lines=3, hidden=True)
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(EventLog)
        for i in range(10):
            log.add_event("WARNING", f"w{i}", AT)
        await pilot.pause()
        assert len(log.events) == 3 and not log.lines
        log.display = True
        await pilot.pause()
        assert [t.split()[-1] for t in texts(log)] == ["w7", "w8", "w9"]


async def test_theme_change_repaints_in_new_colours() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(EventLog)
        log.add_event("ERROR", "boom", AT)
        await pilot.pause()
        app.theme = "textual-light"
        await pilot.pause()
        want = app.current_theme.to_color_system().generate()["error"].upper()
        got = {
            seg.style.color.triplet.hex.upper()
            for seg in log.lines[0]
            if seg.style and seg.style.color and seg.style.color.triplet
        }
        assert want in got and len(log.lines) == 1


# -- UILogHandler ----------------------------------------------------------------------------------


def record(name: str, level: int, msg: str = "hello", args: tuple = ()) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("name", "level", "passes"),
    [
        ("stockup_tui.x", logging.INFO, True),
        ("stockup_tui", logging.INFO, True),
        ("stockup_tui.x", logging.DEBUG, False),
        ("stockup_tui_other", logging.INFO, False),  # not our package, only a shared prefix
        ("websockets", logging.INFO, False),
        ("websockets.client", logging.WARNING, True),
        ("asyncio", logging.ERROR, True),
    ],
)
def test_thresholds(name: str, level: int, passes: bool) -> None:
    h = UILogHandler()
    h.handle(record(name, level))
    assert bool(h.drain()) is passes


def test_records_from_other_threads_are_queued_and_drained() -> None:
    h = UILogHandler()
    logger = logging.getLogger("stockup_tui.test_events_thread")
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        threads = [
            threading.Thread(
                target=lambda k=k: [logger.info("t%d m%d", k, i) for i in range(50)],
            )
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logger.removeHandler(h)
    items = h.drain()
    assert len(items) == 200
    assert {level for level, _, _ in items} == {"INFO"}
    assert all(isinstance(created, float) for _, _, created in items)
    assert {m for _, m, _ in items} >= {"t0 m0", "t3 m49"}
    assert h.drain() == [] and h.pending == 0


def test_bounded_queue_counts_lost_records() -> None:
    h = UILogHandler(capacity=3)
    for i in range(5):
        h.handle(record("stockup_tui.x", logging.WARNING, f"m{i}"))
    assert [m for _, m, _ in h.drain()] == ["m2", "m3", "m4"]
    assert h.lost == 2


def test_never_raises() -> None:
    def broken(level: str, msg: str, created: float) -> None:
        raise RuntimeError("ui gone")

    h = UILogHandler(broken)
    h.handle(record("stockup_tui.x", logging.ERROR))
    assert h.failures == 1
    q = UILogHandler()
    q.handle(record("stockup_tui.x", logging.ERROR, "%d items", ("not-a-number",)))
    [(_, msg, _)] = q.drain()
    assert "%d items" in msg


def test_callback_receives_level_message_created() -> None:
    got: list[tuple[str, str, float]] = []
    h = UILogHandler(lambda *item: got.append(item))
    rec = record("stockup_tui.x", logging.WARNING, "reconnecting in %.1fs", (1.5,))
    h.handle(rec)
    assert got == [("WARNING", "reconnecting in 1.5s", rec.created)]
    assert h.drain() == []


def test_exception_summary_is_appended() -> None:
    h = UILogHandler()
    try:
        raise ValueError("bad frame")
    except ValueError:
        import sys

        rec = logging.LogRecord("stockup_tui.x", logging.ERROR, "f", 1, "parse failed", (), None)
        rec.exc_info = sys.exc_info()
    h.handle(rec)
    [(_, msg, _)] = h.drain()
    assert msg == "parse failed (ValueError: bad frame)"


def test_routine_drops_stay_out_of_the_event_log_and_the_others_come_in() -> None:
    from stockup_tui.engine.drops import Drops

    handler = UILogHandler()
    log = logging.getLogger("stockup_tui.drops")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    try:
        drops = Drops(log_interval=0)
        drops.add("duplicate", 12)  # the feed resends trades: routine, INFO
        drops.add("malformed_json", 1, detail="bad")  # WARNING
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    lines = [text for _, text, _ in handler.drain()]
    assert lines == ["dropped 1 item(s): malformed_json: bad"]
