"""Bus -> windows -> sinks: the analyzer stage.

Each delivery from the bus is applied in log order: revoked partitions are forgotten, started
ones resume at their checkpoint, watermark records slide quiet symbols, trade records (a group:
its symbols' batches at the group's offset) go into the windows. Emitted snapshots go to every
sink; then the delivery is acknowledged with one checkpoint per partition. Records replayed
after a restart (up to the last checkpoint) rebuild the windows without emitting anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.bus.base import Bus
from stockup_tui.engine.codec import CodecError, decode_record
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.latency import RecentLatency
from stockup_tui.engine.model import SymbolSnapshot, Watermark
from stockup_tui.engine.sinks.base import Sink

log = logging.getLogger(__name__)

#: The analyzer's own counters that are drops, reported with all the others.
_ANALYZER_DROPS = ("too_old", "future_time", "bus_duplicate", "too_many_symbols")


def write_sinks(sinks: Sequence[Sink], snapshots: list[SymbolSnapshot], drops: Drops) -> None:
    """Hands the snapshots to every sink; one failing costs its own write (counted), no more."""
    for sink in sinks:
        try:
            sink.write(snapshots)
        except Exception as exc:
            drops.add(f"sink_error:{sink.name}", len(snapshots), detail=str(exc))


class AnalyzerStage:
    """Consumes the bus into the analyzer until the bus ends (then `done` is set)."""

    def __init__(
        self,
        analyzer: Analyzer,
        bus: Bus,
        sinks: Sequence[Sink],
        drops: Drops,
        latency: RecentLatency,
        *,
        live: bool,
    ) -> None:
        self.analyzer = analyzer
        self.bus = bus
        self.sinks = sinks
        self.drops = drops
        self.latency = latency
        self.live = live  # receive -> windows latency is measured for a live feed only
        self.replayed = 0  # trades applied without emitting while recovering
        self.done = asyncio.Event()
        self._counted = dict.fromkeys(_ANALYZER_DROPS, 0)

    async def run(self) -> None:
        analyzer = self.analyzer
        bus = self.bus
        drops = self.drops
        live_latency = self.live
        async for delivery in bus.consume():
            for partition in delivery.revoked:
                analyzer.drop_partition(partition)
            if delivery.revoked:
                log.info("partitions %s revoked", sorted(delivery.revoked))
            for partition, watermark in delivery.starts.items():
                analyzer.start_partition(partition, watermark)
            emitted: list[SymbolSnapshot] = []
            received: dict[float, int] = {}  # receive time -> trades, summed over the delivery
            done: dict[int, int] = {}  # partition -> next offset
            for msg in delivery.messages:
                part = msg.partition
                done[part] = msg.offset + 1
                emit = not msg.replay
                record = msg.record  # the in-process bus hands the record over as it is
                if record is None:
                    try:
                        record = decode_record(msg.payload)
                    except CodecError as exc:
                        if emit:
                            drops.add(f"bus_{exc.reason}", detail=str(exc))
                            await bus.dead_letter(msg, exc.reason)
                        continue
                if isinstance(record, Watermark):
                    try:
                        snaps = analyzer.watermark(
                            record.wm_ms, part, msg.offset, emit, record.final
                        )
                    except Exception as exc:  # a bug must cost this record, not the stream
                        log.exception("analyzer failed on a watermark of partition %d", part)
                        if emit:
                            drops.add("analyzer_error", detail=f"{type(exc).__name__}: {exc}")
                        continue
                    if snaps:
                        emitted.extend(snaps)
                    continue
                # A group is its symbols' batches, applied in order at the group's offset.
                for batch in record if isinstance(record, list) else (record,):
                    try:
                        snaps = analyzer.trades(batch, part, msg.offset, emit)
                    except Exception as exc:  # a bug must cost this batch (counted), not more
                        log.exception("analyzer failed on a record of partition %d", part)
                        if emit:
                            n = len(batch)
                            drops.add("analyzer_error", n, detail=f"{type(exc).__name__}: {exc}")
                        continue
                    if not emit:
                        self.replayed += len(batch)
                    elif live_latency:
                        for recv, n in batch.recv:
                            received[recv] = received.get(recv, 0) + n
                    if snaps:
                        emitted.extend(snaps)
            if received:
                self.latency.record_received(received, time.time())
            if emitted:
                write_sinks(self.sinks, emitted, drops)
            self._count_drops()
            await bus.ack(delivery, {p: analyzer.checkpoint(p, n) for p, n in done.items()})
        self.done.set()

    def _count_drops(self) -> None:
        """The analyzer's drops since the last delivery, into `Drops` like every other."""
        counters = self.analyzer.counters
        counted = self._counted
        for reason, before in counted.items():
            now = getattr(counters, reason)
            if now != before:
                self.drops.add(reason, now - before)
                counted[reason] = now
