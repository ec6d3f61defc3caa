"""Stages over Kafka's shared topics, besides the trades: the watchlist (control topic), every
process's status (status topic) and the metrics a monitor shows (metrics topic).

A bus that has none of these topics (memory, RabbitMQ) gets none of these stages: the pipeline
spawns each only when the bus declares the capability (`bus/base.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from stockup_tui.engine.bus.base import HasMetricsTopic, HasStatusTopic, SharesWatchlist
from stockup_tui.engine.cluster import (
    LOOKBACK_S,
    ClusterView,
    ProcessIdentity,
    encode_status,
    parse_status,
    status_from_stats,
)
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.sinks.history import PriceHistory
from stockup_tui.engine.sinks.snapshots import SnapshotStore
from stockup_tui.engine.stats import PipelineStats

log = logging.getLogger(__name__)


class MonitorStage:
    """`--role monitor`: the screen shows what the analyzers commit to the metrics topic, read
    from the longest window back, so that the chart has the prices of a whole window at once
    (kept in a `PriceHistory`: the topic's snapshots carry no intra-window prices)."""

    def __init__(
        self,
        bus: HasMetricsTopic,
        snapshots: SnapshotStore,
        *,
        longest_ms: int,
        emit_interval_ms: int,
        max_symbols: int,
        live_points: int,
    ) -> None:
        self.bus = bus
        self.snapshots = snapshots
        self.longest_ms = longest_ms
        self.emit_interval_ms = emit_interval_ms
        self.max_symbols = max_symbols
        self.live_points = live_points
        self.monitored = 0  # snapshots read from the metrics topic

    async def run(self) -> None:
        latest: dict[str, SymbolSnapshot] = dict(self.snapshots.latest)
        history = PriceHistory(self.longest_ms, self.max_symbols)
        back = self.longest_ms + 3 * max(self.emit_interval_ms, 5_000)
        points = self.live_points
        async for snaps in self.bus.watch_metrics(int(time.time() * 1000) - back):
            history.add(snaps)
            changed = set()
            for snap in snaps:
                old = latest.get(snap.symbol)
                if old is None or snap.ts_ms >= old.ts_ms:
                    latest[snap.symbol] = snap
                    changed.add(snap.symbol)
            self.monitored += len(snaps)
            self.snapshots.write(snaps)
            if points:
                for symbol in changed:
                    latest[symbol] = history.with_closes(latest[symbol], points)
            self.snapshots.replace(list(latest.values()))

    def newest_at(self) -> float | None:
        """When the newest snapshot shown was emitted (event time, seconds)."""
        newest = max((snap.ts_ms for snap in self.snapshots.latest.values()), default=None)
        return None if newest is None else newest / 1000


async def follow_watchlist(
    bus: SharesWatchlist,
    current: Callable[[], tuple[str, ...]],
    apply: Callable[[list[str]], None],
) -> None:
    """The processes with a feed (`all`, `query`) follow the watchlist changes made on any
    screen of the deployment (a monitor's too), from the control topic; their own come back
    the same and change nothing."""
    async for symbols in bus.watch_control():
        if tuple(symbols) != current():
            log.info("watchlist from the control topic: %s", ", ".join(symbols))
            apply(symbols)


class StatusStage:
    """This process's status record every `interval` seconds (the monitor's cluster view)."""

    def __init__(
        self,
        bus: HasStatusTopic,
        identity: ProcessIdentity,
        interval: float,
        *,
        fresh_stats: Callable[[float], PipelineStats],
        final_stats: Callable[[], PipelineStats],
    ) -> None:
        self.bus = bus
        self.identity = identity
        self.interval = interval
        self._fresh_stats = fresh_stats
        self._final_stats = final_stats
        self.stopping = False

    def say(self, state: str, *, farewell: bool = False) -> None:
        """Writes a status record (`farewell`: handed to the bus to send after its consumer
        has left, the last thing this process says)."""
        stats = self._final_stats() if farewell else self._fresh_stats(min(1.0, self.interval))
        status = status_from_stats(stats, self.identity, state=state, interval=self.interval)
        record = (self.identity.key.encode(), encode_status(status))
        if farewell:
            self.bus.farewell = record
        else:
            self.bus.publish_status(*record)

    async def run(self) -> None:
        while True:
            self.say("stopping" if self.stopping else "running")
            await asyncio.sleep(self.interval)


async def watch_cluster(bus: HasStatusTopic, view: ClusterView, drops: Drops) -> None:
    """`--role monitor`: every process's status records, the last minute first."""
    started = time.time()
    async for batch in bus.watch_status(int((started - LOOKBACK_S) * 1000)):
        now = time.time()
        for value, ts_ms in batch:
            try:
                status = parse_status(value)
            except ValueError as exc:
                view.invalid += 1
                drops.add("status_invalid", detail=str(exc))
                continue
            # Written before this monitor started: aged by its timestamp; else by arrival.
            written = ts_ms / 1000
            view.add(status, written if 0 <= written < started else now)
