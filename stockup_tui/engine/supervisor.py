"""Runs each stage as a task that restarts on failure, so that nothing hangs silently.

An exception in a stage is counted, logged and the stage restarted with exponential backoff
(0.1 s doubling to 10 s, from the start again once it ran fine for 30 s). A finite stage (a
replay's source, the analyzer of a closed bus) that returns is `finished`; a cancelled one is
`stopped`. The states are immutable and swapped whole: the stats read them from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from stockup_tui.engine.resilience import Backoff
from stockup_tui.engine.stats import StageState

log = logging.getLogger(__name__)

#: A stage that ran this long before failing starts its backoff over.
HEALTHY_RUN_S = 30.0


@dataclass
class _Stage:
    name: str
    state: StageState
    task: asyncio.Task[None] | None = None


class Supervisor:
    """The stages of one pipeline: spawn, restart with backoff, cancel."""

    def __init__(self) -> None:
        self._stages: dict[str, _Stage] = {}

    def spawn(
        self, name: str, body: Callable[[], Awaitable[None]], *, finite: bool = False
    ) -> None:
        stage = _Stage(name, StageState(name, "starting"))
        self._stages[name] = stage
        stage.task = asyncio.get_running_loop().create_task(
            self._supervise(stage, body, finite), name=f"stage:{name}"
        )

    def cancel(self, name: str) -> None:
        stage = self._stages.get(name)
        if stage and stage.task and not stage.task.done():
            stage.task.cancel()

    async def cancel_all(self) -> None:
        """Cancels every stage and waits until each has ended."""
        for name in list(self._stages):
            self.cancel(name)
        await asyncio.gather(
            *(s.task for s in self._stages.values() if s.task), return_exceptions=True
        )

    def states(self) -> tuple[StageState, ...]:
        return tuple(st.state for st in self._stages.values())

    async def _supervise(
        self, stage: _Stage, body: Callable[[], Awaitable[None]], finite: bool
    ) -> None:
        backoff = Backoff(0.1, 10.0)
        while True:
            stage.state = replace(stage.state, status="running")
            started = time.monotonic()
            try:
                await body()
            except asyncio.CancelledError:
                stage.state = replace(stage.state, status="stopped")
                raise
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - started > HEALTHY_RUN_S:
                    backoff.reset()  # it ran fine for a while: start the backoff over
                delay = backoff.next()
                log.exception("stage %s failed (%s); restarting in %.1fs", stage.name, msg, delay)
                stage.state = replace(
                    stage.state,
                    status="restarting",
                    restarts=stage.state.restarts + 1,
                    last_error=msg[:300],
                )
                await asyncio.sleep(delay)
                continue
            stage.state = replace(stage.state, status="finished" if finite else "stopped")
            return
