"""The in-process bus (the default): a bounded queue between the source and the analyzer.

It carries the records themselves (`Message.record`), not bytes: encoding a flush to JSON and
decoding it again in the same process was a third of the default pipeline's CPU, for nothing
(the parser has validated every trade; no byte crosses a socket). The records are the same ones
the network buses' messages decode to (tests/engine/test_pipeline.py and
tests/integration/test_kafka.py check that their outputs agree). The bound gives back-pressure:
a slow analyzer makes the publisher wait, and the source with it, instead of letting memory
grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace

from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.base import ALL_PARTITIONS, BusStats, Delivery, Message


class MemoryBus:
    def __init__(self, capacity: int = 1000) -> None:
        self._queue: asyncio.Queue[Sequence[Message] | None] = asyncio.Queue(capacity)
        self._closed = False
        self._queued_trades = 0
        self.stats = BusStats(kind="memory", queue_capacity=capacity, queue_unit="flushes")

    async def start(self) -> None:
        self.stats.connected = True

    def route(self, key: bytes) -> int:
        return 0  # one queue

    async def publish(self, messages: Sequence[Message]) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        if not messages:
            return
        # One partition: a watermark for all of them is a message of partition 0. (Offsets stay
        # -1: nothing is ever replayed from memory.)
        if any(m.partition == ALL_PARTITIONS for m in messages):
            messages = [
                replace(m, partition=0) if m.partition == ALL_PARTITIONS else m for m in messages
            ]
        await self._queue.put(messages)
        self._queued_trades += sum(m.trades for m in messages)
        stats = self.stats
        stats.published_messages += len(messages)
        stats.queue_depth = self._queue.qsize()

    async def consume(self) -> AsyncIterator[Delivery]:
        queue = self._queue
        stats = self.stats
        while True:
            item = await queue.get()
            if item is None:  # closed: everything before it has been consumed
                return
            stats.consumed_messages += len(item)
            self._queued_trades -= sum(m.trades for m in item)
            stats.queue_depth = stats.backlog = queue.qsize()
            yield Delivery(messages=item)

    async def ack(self, delivery: Delivery, checkpoints: Mapping[int, Checkpoint]) -> None:
        self.stats.acked_messages += len(delivery.messages)

    async def dead_letter(self, message: Message, reason: str) -> None:
        return None  # in-process: nothing to keep beyond the drop counter

    def unsent_trades(self) -> int:
        return self._queued_trades

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._queue.put(None)
        self.stats.connected = False
