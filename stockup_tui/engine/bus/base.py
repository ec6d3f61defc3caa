"""The message bus contract that the memory, Kafka and RabbitMQ buses implement.

A message is one `SymbolBatch` encoded by `stockup_tui.engine.codec` (versioned JSON, never
pickle) and keyed by its symbol, so every trade of a symbol stays in order on one partition.
Consumers acknowledge a delivery only after its effects are done (at-least-once); the duplicate
filter and the analyzer's idempotence absorb redeliveries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes
    payload: bytes


@dataclass(slots=True)
class Delivery:
    """Messages handed to a consumer at once; `ack()` after processing them all."""

    messages: Sequence[Message]
    token: object = None  # bus-specific position (offsets, delivery tags)


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

    async def ack(self, delivery: Delivery) -> None: ...

    async def close(self) -> None:
        """No more publishing; consumers drain what is queued, then stop."""
        ...
