"""The message bus contract that the memory, Kafka and RabbitMQ buses implement.

A message is one `SymbolBatch` encoded by `stockup_tui.engine.codec` (versioned JSON, never
pickle) and keyed by its symbol, so every trade of a symbol stays in order on one partition.
Consumers acknowledge a delivery only after its effects are done (at-least-once). Every message
carries a batch id (producer, sequence) in its payload; the analyzer stage skips a batch it has
already applied (`BatchIds`), so redeliveries and republished batches are never counted twice.

Recovery contract for the network buses: on start (or a new Kafka assignment) the bus rewinds to
about `replay_ms` before the last acknowledged watermark and marks the messages up to the last
acknowledged position with `replay=True`; the analyzer applies those to its windows without
emitting, so its first snapshots after a restart are already exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes
    payload: bytes
    trades: int = 0  # trades inside, so that a message dropped on a full buffer is counted
    partition: int = 0  # Kafka partition (0 elsewhere): the analyzer tracks symbol ownership
    replay: bool = False  # rebuild state only: already processed before a restart


@dataclass(slots=True)
class Delivery:
    """Messages handed to a consumer at once; `ack()` after processing them all."""

    messages: Sequence[Message]
    token: object = None  # bus-specific position (offsets, delivery tags)
    revoked: tuple[int, ...] = ()  # partitions taken away before these messages (rebalance)


@dataclass(slots=True)
class BusStats:
    kind: str
    connected: bool = False
    published_messages: int = 0
    published_bytes: int = 0
    consumed_messages: int = 0
    acked_messages: int = 0
    queue_depth: int = 0
    queue_capacity: int = 0
    publish_errors: int = 0
    last_error: str | None = None
    # Bus-specific health lines for the screen, e.g. {"lag": "p0 12, p1 0", "confirm p99": "4 ms"}
    details: dict[str, str] = field(default_factory=dict)


class Bus(Protocol):
    """Publish keyed batches, consume them, acknowledge after processing, report health."""

    stats: BusStats

    async def start(self) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Hands messages to the bus; waits (back-pressure) when the bus is full."""
        ...

    def consume(self) -> AsyncIterator[Delivery]:
        """Yields deliveries until the bus is closed and drained."""
        ...

    async def ack(self, delivery: Delivery, watermark_ms: int | None = None) -> None:
        """Marks the delivery done; network buses store `watermark_ms` with the position."""
        ...

    async def dead_letter(self, message: Message, reason: str) -> None:
        """Parks a message the analyzer cannot decode (network buses: a dead-letter topic/queue).

        The pipeline has already counted it under `bus_<reason>`; this keeps the bytes for a
        person to inspect. Must not raise: a failure is counted in the bus stats.
        """
        ...

    async def close(self) -> None:
        """No more publishing; consumers drain what is queued, then stop."""
        ...
