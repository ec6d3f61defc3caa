"""The message bus contract that the memory, Kafka and RabbitMQ buses implement.

A message is encoded by `stockup_tui.engine.codec` (versioned JSON, never pickle): the batches
of every symbol a flush routes to one partition (a group, `partition` set by the bus's `route`,
which keeps every trade of a symbol in order on one partition), one `SymbolBatch` keyed by its
symbol (before the bus can route), or one `Watermark` that the query side publishes to every
partition (`partition=ALL_PARTITIONS`).
Publishing keeps the order of the messages within each partition, across reconnects too: the
analyzer's output is a function of that order. Consumers acknowledge a delivery only after its
effects are done (at-least-once). Every batch carries an id (producer, sequence); the analyzer
skips a batch it has already applied, so redeliveries and republished batches count once.

Recovery contract for the network buses: with each acknowledgement the bus stores, per
partition, the analyzer's `Checkpoint` (where to replay from, and the watermark there) next to
the position. On start (or a new Kafka assignment) it rewinds each partition to the checkpoint's
`replay_from`, says so in `Delivery.starts`, and marks the messages before the acknowledged
position with `replay=True`; the analyzer applies those without emitting, so it reaches the
very state it had and its next snapshots are the ones it would have emitted anyway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.model import Record, SymbolSnapshot
from stockup_tui.engine.sinks.base import Sink
from stockup_tui.engine.stats import BusDetail, PartitionLag

#: `Message.partition` of a published watermark: the bus writes it into every partition.
ALL_PARTITIONS = -1


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes
    payload: bytes
    trades: int = 0  # trades inside, so that a message dropped on a full buffer is counted
    # Kafka partition (0 elsewhere); ALL_PARTITIONS for a watermark; for a group (key
    # GROUP_KEY) the one it was routed to.
    partition: int = 0
    replay: bool = False  # rebuild state only: already processed before a restart
    offset: int = -1  # position in its partition (Kafka offset, stream offset, a counter)
    # The in-process bus carries the record itself and no payload: nothing crosses a socket,
    # so there is nothing to encode, nor to validate on the way in (see bus/memory.py).
    record: Record | None = None


@dataclass(slots=True)
class Delivery:
    """Messages handed to a consumer at once; `ack()` after processing them all."""

    messages: Sequence[Message]
    token: object = None  # bus-specific position (offsets, delivery tags)
    revoked: tuple[int, ...] = ()  # partitions taken away before these messages (rebalance)
    # Partitions (re)read from a checkpoint from here on: their state starts afresh at the
    # watermark given (None: no checkpoint, the partition is read from its beginning).
    starts: Mapping[int, int | None] = field(default_factory=dict)


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
    backlog: int | None = None  # messages still to read for this consumer, when known
    queue_unit: str = "messages"  # what queue_depth and queue_capacity count
    closing: str | None = None  # the step `close()` is at, for a person watching it quit
    partitions: tuple[PartitionLag, ...] = ()  # the partitions this consumer reads (Kafka)
    detail: BusDetail | None = None  # what only this kind of bus reports (engine/stats.py)


class Bus(Protocol):
    """Publish keyed batches, consume them, acknowledge after processing, report health."""

    @property
    def stats(self) -> BusStats:
        """The bus's figures, read by the pipeline (an attribute, or a property that refreshes
        them when read)."""
        ...

    async def start(self) -> None: ...

    def route(self, key: bytes) -> int | None:
        """The partition a key's messages go to, or None while the bus cannot tell yet (Kafka
        before it knows the topic). The publisher puts the batches of one partition into one
        group message (codec `GROUP_KEY`, `Message.partition` set); with None it sends one
        message per symbol, keyed, and the bus partitions it the same way."""
        ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Hands messages to the bus; waits (back-pressure) when the bus is full."""
        ...

    def consume(self) -> AsyncIterator[Delivery]:
        """Yields deliveries until the bus is closed and drained."""
        ...

    async def ack(self, delivery: Delivery, checkpoints: Mapping[int, Checkpoint]) -> None:
        """Marks the delivery done; network buses store each partition's checkpoint with the
        position (see the recovery contract above)."""
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

    def unsent_trades(self) -> int:
        """Trades handed to `publish` that the bus has not taken for good yet (a network bus:
        not acknowledged by the broker; the memory bus: not consumed). What quitting waits for."""
        ...


# -- what some buses do beyond the contract (Kafka: the topics beside the trades) ------------
# The pipeline asks `isinstance(bus, ...)` and wires the stages these need; a bus without one
# (memory, RabbitMQ) has none of them.


@runtime_checkable
class SharesWatchlist(Protocol):
    """The watchlist travels between the processes of a deployment (Kafka's control topic)."""

    def publish_control(self, symbols: list[str]) -> None: ...

    def watch_control(self) -> AsyncIterator[list[str]]:
        """Every watchlist written, the latest first, until the bus closes."""
        ...


@runtime_checkable
class HasMetricsTopic(Protocol):
    """Analyzers write their snapshots where monitors read them (Kafka's metrics topic)."""

    metrics_sink: Sink | None  # None in a process that does not analyze

    def watch_metrics(self, since_ms: int) -> AsyncIterator[list[SymbolSnapshot]]: ...


@runtime_checkable
class HasStatusTopic(Protocol):
    """Every process says who it is and how it does (Kafka's status topic: the cluster view)."""

    farewell: tuple[bytes, bytes] | None  # (key, value) sent after the consumer has left

    def instance(self) -> str:
        """The consumer's stable instance id ("" when it has none)."""
        ...

    def publish_status(self, key: bytes, value: bytes) -> None: ...

    def watch_status(self, since_ms: int) -> AsyncIterator[list[tuple[bytes, int]]]: ...
