"""The stage bodies and their supervisor, on their own (the pipelines in test_pipeline.py and
the server tests run them together)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.bus.base import Delivery
from stockup_tui.engine.bus.memory import MemoryBus
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.latency import RecentLatency
from stockup_tui.engine.stages.analyze import AnalyzerStage
from stockup_tui.engine.supervisor import Supervisor
from tests.helpers import wait_until


class _TwoRunsBus(MemoryBus):
    """One empty delivery, then a failure: the stage restarts and reads one more."""

    def __init__(self) -> None:
        super().__init__(10)
        self.runs = 0

    async def consume(self) -> AsyncIterator[Delivery]:  # type: ignore[override]
        self.runs += 1
        yield Delivery(messages=())
        if self.runs == 1:
            raise ConnectionError("broker went away")


async def test_a_restarted_analyzer_stage_counts_the_analyzers_drops_once() -> None:
    analyzer = Analyzer([60_000], 1000, 5000)
    analyzer.counters.too_old = 3  # as if three trades were too old before the failure
    drops = Drops()
    bus = _TwoRunsBus()
    stage = AnalyzerStage(analyzer, bus, [], drops, RecentLatency(), live=False)
    supervisor = Supervisor()
    supervisor.spawn("analyzer", stage.run, finite=True)
    await asyncio.wait_for(stage.done.wait(), 5)
    assert bus.runs == 2
    assert drops.get("too_old") == 3  # not 6: the count survives the restart
    (state,) = supervisor.states()
    assert state.restarts == 1 and "broker went away" in (state.last_error or "")
    await supervisor.cancel_all()
    assert supervisor.states()[0].status == "finished"


async def test_supervisor_cancel_all_stops_every_stage() -> None:
    supervisor = Supervisor()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    supervisor.spawn("a", forever)
    supervisor.spawn("b", forever)
    await asyncio.wait_for(started.wait(), 5)
    await wait_until(
        lambda: all(s.status == "running" for s in supervisor.states()), what="running"
    )
    await supervisor.cancel_all()
    assert [s.status for s in supervisor.states()] == ["stopped", "stopped"]


@pytest.mark.parametrize("finite", [True, False])
async def test_a_stage_that_returns_is_finished_only_when_finite(finite: bool) -> None:
    supervisor = Supervisor()

    async def body() -> None:
        return None

    supervisor.spawn("s", body, finite=finite)
    await wait_until(lambda: supervisor.states()[0].status in ("finished", "stopped"), what="end")
    assert supervisor.states()[0].status == ("finished" if finite else "stopped")
