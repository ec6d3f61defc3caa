"""What every component that talks to a server needs, written once: how long to wait before the
next attempt (`Backoff`), what to log while it keeps failing (`ErrorLatch`), and a thread with its
own event loop for work that must not share the caller's (`LoopThread`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Backoff:
    """Exponential backoff: waits `initial` seconds after the first failure, doubling up to
    `cap`; `reset()` after a success. Retrying at a fixed pace hammers a server that is
    struggling, and a long wait after a short outage delays the recovery for nothing.

    `jitter=(low, high)` multiplies each wait by a factor drawn uniformly from that range, so
    that many clients that lost the same server do not all come back in the same instant.
    """

    def __init__(
        self, initial: float, cap: float, jitter: tuple[float, float] | None = None
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self._delay = min(initial, cap)

    @property
    def delay(self) -> float:
        """The next wait before jitter (for a log line saying when the next try is)."""
        return self._delay

    def next(self, cap: float | None = None) -> float:
        """The seconds to wait now; the next wait is twice as long (up to `cap`). A `cap`
        given here bounds this wait only, e.g. while draining at shutdown, when a long wait
        would just hold the exit up."""
        delay = self._delay if cap is None else min(self._delay, cap)
        self._delay = min(self._delay * 2, self.cap)
        if self.jitter is not None:
            delay *= random.uniform(*self.jitter)
        return delay

    def reset(self) -> None:
        """After a success: the next failure is retried after `initial` again."""
        self._delay = min(self.initial, self.cap)


class ErrorLatch:
    """Logs an error once per change of state, not once per attempt: a server away for an hour
    is one line, not thousands, and a different error is still seen at once.

    `template` is a %-style logging format with `%(error)s` and any names given as `fields`.
    `distinct=False` logs only the first error until `clear()`, for errors whose text varies
    while the trouble stays the same. Thread-safe: client libraries report from their threads.
    """

    def __init__(
        self,
        logger: logging.Logger,
        template: str,
        *,
        level: int = logging.WARNING,
        distinct: bool = True,
        recovered: str | None = None,
        **fields: object,
    ) -> None:
        self._log = logger
        self._template = template
        self._level = level
        self._distinct = distinct
        self._recovered = recovered
        self._fields = fields
        self._lock = threading.Lock()
        self.error: str | None = None  # the current error; None when all is well

    def set(self, error: str) -> bool:
        """Records a failure; logs it unless it is the one already logged. True if logged."""
        with self._lock:
            latched = error == self.error if self._distinct else self.error is not None
            self.error = error
        if not latched:
            self._log.log(self._level, self._template, {**self._fields, "error": error})
        return not latched

    def clear(self) -> bool:
        """Records a success: the next error is logged again. True if an error was latched
        (then the `recovered` message, if any, is logged, with the error it ends)."""
        with self._lock:
            error, self.error = self.error, None
        if error is None:
            return False
        if self._recovered is not None:
            self._log.log(self._level, self._recovered, {**self._fields, "error": error})
        return True


class LoopThread:
    """A daemon thread running its own asyncio event loop, for work that must not share (or be
    slowed by) the caller's loop. `start` runs `setup()` there and returns once it is done (or
    raises its error); the loop then serves calls until `stop`, which runs `teardown()` and ends
    the thread. `what` names it in errors and logs."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None  # setup's, raised by start()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()

    def start(
        self,
        setup: Callable[[], Awaitable[object]],
        teardown: Callable[[], Awaitable[object]],
        timeout: float,
    ) -> None:
        """Starts the thread and waits up to `timeout` for `setup()` to finish."""
        if self._thread is not None:
            raise RuntimeError(f"{self.what} thread already started")
        self._thread = threading.Thread(
            target=self._main, args=(setup, teardown), name=self.name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.what} did not start within {timeout:g}s")
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float | None = None) -> bool:
        """Has `teardown()` run and the thread end, waiting at most `timeout` seconds (None:
        as long as it takes). True once the thread has ended; safe to call again."""
        thread = self._thread
        if thread is None:
            return True
        self._stopping = True  # seen by _run if its loop is not up yet
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        return not thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """Runs `fn` on the loop and returns its result: for control, not for every trade."""
        loop = self._running_loop()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Awaits `coro` on the loop and returns its result."""
        loop = self._running_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            raise RuntimeError(f"{self.what} is not running")
        return self.loop

    def _main(
        self,
        setup: Callable[[], Awaitable[object]],
        teardown: Callable[[], Awaitable[object]],
    ) -> None:
        try:
            asyncio.run(self._run(setup, teardown))
        except BaseException:
            log.exception("%s thread crashed", self.what)

    async def _run(
        self,
        setup: Callable[[], Awaitable[object]],
        teardown: Callable[[], Awaitable[object]],
    ) -> None:
        self._stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        try:
            await setup()
        except BaseException as exc:
            self.error = exc
            return
        finally:
            self._ready.set()
        try:
            if not self._stopping:
                await self._stop.wait()
        finally:
            await teardown()
