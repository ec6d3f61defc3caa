"""Runs a `Pipeline` on its own thread and event loop, for a front end that has its own loop.

The screen must stay responsive whatever the trade rate, so the engine does not share the UI's
event loop: the host starts a daemon thread with a fresh loop, builds and starts the pipeline
there, and offers thread-safe calls into it. Readers take the pipeline's immutable snapshots
(`latest`, `stats`) directly: they are swapped whole, never mutated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from stockup_tui.config import Settings
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.resilience import LoopThread
from stockup_tui.engine.sinks.base import Sink
from stockup_tui.engine.sources.previous_close import PreviousCloses
from stockup_tui.engine.stats import PipelineStats
from stockup_tui.engine.wiring import build_pipeline

T = TypeVar("T")


class EngineHost:
    def __init__(
        self,
        settings: Settings,
        *,
        sinks: Iterable[Sink] = (),
        live_interval: float = 0.1,
        live_points: int = 0,
    ) -> None:
        # Built here, on the caller's thread, so a configuration error surfaces at once.
        self.pipeline = build_pipeline(
            settings, sinks=list(sinks), live_interval=live_interval, live_points=live_points
        )
        self._thread = LoopThread("stockup-engine", "engine")
        self._closes_task: asyncio.Task[None] | None = None
        # Previous closes for the screen's day change (None: no REST API for this feed).
        self.closes: PreviousCloses | None = None
        self._wanted: list[str] = list(settings.symbols)

    @property
    def latest(self) -> Mapping[str, SymbolSnapshot]:
        return self.pipeline.snapshots.latest

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    def start(self, timeout: float = 15.0) -> None:
        """Starts the engine thread and waits until the pipeline runs (or raises its error)."""
        self._thread.start(self._setup, self._teardown, timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Drains the pipeline and ends the thread (blocking, at most `timeout` seconds: None
        waits as long as the pipeline's own bounds take). True once the thread has ended."""
        return self._thread.stop(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Runs `fn` on the engine loop and returns its result (for control, not per trade)."""
        return self._thread.call(fn, timeout)

    @property
    def control_version(self) -> int:
        """Grows when another screen changed the watchlist (see `Pipeline._run_control`)."""
        return self.pipeline.control_version

    @property
    def symbols(self) -> list[str]:
        """The watchlist the feed follows now."""
        return list(self.pipeline.symbols)

    def stop_progress(self) -> str:
        return self.pipeline.stop_progress()

    @property
    def lost_at_exit(self) -> Mapping[str, int]:
        return self.pipeline.lost_at_exit

    def set_symbols(self, symbols: Iterable[str]) -> None:
        wanted = self._wanted = list(symbols)

        def change() -> None:
            self.pipeline.set_symbols(wanted)
            if self.closes is not None:
                self.closes.want(wanted)

        self.call(change)

    def recent_trades(self, symbol: str, n: int = 20) -> list[tuple[int, float, float]]:
        """The symbol's latest trades, newest first, from the engine's thread (a copy)."""
        try:
            return self.call(lambda: self.pipeline.analyzer.recent_trades(symbol, n), 1.0)
        except (RuntimeError, TimeoutError):  # not running, or busy for a second: no tape now
            return []

    @property
    def previous_close(self) -> Mapping[str, float]:
        """Previous closes known so far (empty without a REST API)."""
        return self.closes.closes if self.closes is not None else {}

    async def _setup(self) -> None:
        """On the engine thread: the pipeline, then the previous closes if the feed has them."""
        await self.pipeline.start()
        url = self.pipeline.rest_url()
        if url is not None:
            token = self.pipeline.settings.source.token
            self.closes = PreviousCloses(
                url,
                token.get_secret_value() if token else None,
                spacing=0.0 if self.pipeline.simulator is not None else 1.1,
            )
            self.closes.want(self._wanted)
            self._closes_task = asyncio.create_task(self.closes.run(), name="previous-closes")

    async def _teardown(self) -> None:
        if self._closes_task is not None:
            self._closes_task.cancel()
        await self.pipeline.stop()
