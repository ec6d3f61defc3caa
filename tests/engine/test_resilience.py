"""The retry, logging and thread helpers every server client shares (engine/resilience.py)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from stockup_tui.engine.resilience import Backoff, ErrorLatch, LoopThread

# -- Backoff -------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(0.2, 5.0)
    assert [backoff.next() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.delay == 0.2
    assert [backoff.next() for _ in range(2)] == [0.2, 0.4]


def test_backoff_initial_above_the_cap_is_capped() -> None:
    backoff = Backoff(1.0, 0.3)
    assert [backoff.next() for _ in range(2)] == [0.3, 0.3]
    backoff.reset()
    assert backoff.next() == 0.3


def test_backoff_cap_for_one_wait_bounds_that_wait_only() -> None:
    """While draining the producer waits at most 0.5 s; the doubling goes on underneath."""
    backoff = Backoff(0.2, 5.0)
    assert [backoff.next(cap=0.5) for _ in range(4)] == [0.2, 0.4, 0.5, 0.5]
    assert backoff.next() == 3.2


def test_backoff_jitter_stays_in_its_range_around_each_step() -> None:
    for step in (0.05, 1.0, 4.0):
        backoff = Backoff(step, step, jitter=(0.8, 1.2))  # the same step, many draws
        waits = [backoff.next() for _ in range(200)]
        assert all(0.8 * step <= w <= 1.2 * step for w in waits)
        assert max(waits) - min(waits) > 0.2 * step  # drawn, not a constant
    backoff = Backoff(1.0, 4.0, jitter=(0.5, 1.0))
    for step in (1.0, 2.0, 4.0, 4.0):
        assert backoff.delay == step  # jitter does not compound into the doubling
        assert 0.5 * step <= backoff.next() <= step


def test_backoff_jitter_range_ends_are_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    import stockup_tui.engine.resilience as resilience

    backoff = Backoff(2.0, 8.0, jitter=(0.5, 1.0))
    monkeypatch.setattr(resilience.random, "uniform", lambda low, high: low)
    assert backoff.next() == 1.0
    monkeypatch.setattr(resilience.random, "uniform", lambda low, high: high)
    assert backoff.next() == 4.0


# -- ErrorLatch ----------------------------------------------------------------------------


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.latch"]


def test_error_latch_logs_each_error_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.latch")
    latch = ErrorLatch(logging.getLogger("test.latch"), "%(who)s: %(error)s", who="broker")
    assert latch.set("refused")
    assert not latch.set("refused")
    assert not latch.set("refused")
    assert latch.set("timed out")
    assert latch.error == "timed out"
    assert latch.clear()
    assert latch.error is None
    assert not latch.clear()
    assert latch.set("timed out")  # the same error after a recovery is news again
    assert lines(caplog) == ["broker: refused", "broker: timed out", "broker: timed out"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_error_latch_not_distinct_logs_the_first_error_and_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test.latch")
    latch = ErrorLatch(
        logging.getLogger("test.latch"),
        "write failed: %(error)s",
        level=logging.ERROR,
        distinct=False,
        recovered="back after: %(error)s",
    )
    assert latch.set("503")
    assert not latch.set("connection reset")  # the same trouble, worded otherwise
    assert latch.error == "connection reset"
    assert latch.clear()
    assert not latch.clear()  # no second recovery line
    assert lines(caplog) == ["write failed: 503", "back after: connection reset"]
    assert all(r.levelno == logging.ERROR for r in caplog.records)


def test_error_latch_logs_once_when_threads_report_together(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test.latch")
    latch = ErrorLatch(logging.getLogger("test.latch"), "%(error)s")
    barrier = threading.Barrier(8)

    def report() -> None:
        barrier.wait()
        for _ in range(200):
            latch.set("down")

    threads = [threading.Thread(target=report) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lines(caplog) == ["down"]


# -- LoopThread ----------------------------------------------------------------------------


def test_loop_thread_runs_setup_calls_and_teardown_on_its_own_thread() -> None:
    seen: dict[str, object] = {}

    async def setup() -> None:
        seen["setup"] = threading.current_thread().name
        seen["loop"] = asyncio.get_running_loop()

    async def teardown() -> None:
        seen["teardown"] = threading.current_thread().name

    async def add(a: int, b: int) -> tuple[int, str]:
        await asyncio.sleep(0)
        return a + b, threading.current_thread().name

    runner = LoopThread("test-loop", "test loop")
    runner.start(setup, teardown, timeout=5.0)
    try:
        assert seen["setup"] == "test-loop" and runner.is_alive()
        assert runner.loop is seen["loop"]
        assert runner.run(add(2, 3), timeout=5.0) == (5, "test-loop")
        assert runner.call(lambda: threading.current_thread().name, timeout=5.0) == "test-loop"
        with pytest.raises(ZeroDivisionError):
            runner.call(lambda: 1 // 0, timeout=5.0)  # the caller gets the error
        with pytest.raises(RuntimeError, match="already started"):
            runner.start(setup, teardown, timeout=5.0)
    finally:
        assert runner.stop(timeout=5.0)
    assert seen["teardown"] == "test-loop"
    assert not runner.is_alive()
    assert runner.stop(timeout=5.0)  # again: nothing left to do


def test_loop_thread_start_raises_the_setup_error() -> None:
    torn_down = []

    async def setup() -> None:
        raise OSError("address in use")

    async def teardown() -> None:
        torn_down.append(True)

    runner = LoopThread("test-loop", "test loop")
    with pytest.raises(OSError, match="address in use"):
        runner.start(setup, teardown, timeout=5.0)
    assert isinstance(runner.error, OSError)
    assert runner.stop(timeout=5.0)
    assert torn_down == []  # nothing was set up


def test_loop_thread_stopped_while_starting_tears_down_once_set_up() -> None:
    gate = threading.Event()
    torn_down = threading.Event()

    async def setup() -> None:
        await asyncio.to_thread(gate.wait)

    async def teardown() -> None:
        torn_down.set()

    runner = LoopThread("test-loop", "test loop")
    with pytest.raises(TimeoutError, match="test loop did not start within"):
        runner.start(setup, teardown, timeout=0.01)
    assert not runner.stop(timeout=0)  # still setting up
    gate.set()
    assert runner.stop(timeout=5.0)
    assert torn_down.is_set()


def test_loop_thread_call_before_start_says_not_running() -> None:
    runner = LoopThread("test-loop", "test loop")
    with pytest.raises(RuntimeError, match="test loop is not running"):
        runner.call(lambda: None, timeout=1.0)
    assert runner.stop()  # never started: nothing to stop


def test_loop_thread_logs_a_crash_after_start(caplog: pytest.LogCaptureFixture) -> None:
    async def setup() -> None:
        return None

    async def teardown() -> None:
        raise ValueError("teardown broke")

    runner = LoopThread("test-loop", "test loop")
    runner.start(setup, teardown, timeout=5.0)
    with caplog.at_level(logging.ERROR, logger="stockup_tui.engine.resilience"):
        assert runner.stop(timeout=5.0)
    assert "test loop thread crashed" in caplog.text
    assert "teardown broke" in caplog.text
