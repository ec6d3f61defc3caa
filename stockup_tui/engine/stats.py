"""One immutable picture of the whole pipeline's health, rebuilt once a second.

Stages keep plain counters (cheap to bump on the hot path); the pipeline turns them into rates once
a tick and publishes a frozen `PipelineStats` that the screen, the headless status line and the
InfluxDB ops measurement read from any thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stockup_tui.engine.cluster import ClusterFigures, ProcessIdentity

if TYPE_CHECKING:  # process.py measures its rates with RateMeter, from here
    from stockup_tui.engine.process import ProcessFigures


@dataclass(frozen=True, slots=True)
class StageState:
    name: str
    status: str  # "starting" | "running" | "restarting" | "finished" | "failed" | "stopped"
    restarts: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class SourceFigures:
    kind: str
    endpoint: str
    connected: bool
    connections: int
    reconnects: int
    last_gap: float | None
    max_gap: float
    frames: int
    frames_per_s: float
    trades: int  # good trades out of the parser
    trades_per_s: float
    last_frame_age: float | None
    subscribed: tuple[str, ...]
    last_error: str | None
    finished: bool


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """A partition this process reads: what is left and how old the newest record read is."""

    partition: int
    messages: int  # records still to read (end offset - position)
    seconds: float | None  # 0 when caught up; while behind, the age of the newest record read


# -- what a bus reports beyond the common figures ---------------------------------------------
# Numbers as measured (durations in seconds, None while unknown); a part the process does not
# run is None (a query process has no consumer). Only the front ends and the InfluxDB writer
# turn them into text or fields: the screen (widgets/health.py `bus_detail_rows`) and
# `pipeline_ops` (sinks/influx/lines.py `_DETAIL_FIELDS`, the field of each figure).


@dataclass(frozen=True, slots=True)
class KafkaProducerFigures:
    """The producer of the trades (engine/bus/kafka/producer.py)."""

    acked: int  # records the broker acknowledged
    in_flight: int
    resent: int
    retries_per_s: float
    ack_p50: float | None  # send -> broker acknowledgement, since the last read
    ack_p99: float | None


@dataclass(frozen=True, slots=True)
class KafkaGroupFigures:
    """The consumer in its group (engine/bus/kafka/consumer.py)."""

    group_id: str
    member: str | None  # the static member's instance id, if it has one
    assignment: tuple[int, ...]
    lag: tuple[tuple[int, int], ...]  # (partition, records still to read), once known
    commits: int
    commit_p50: float | None
    commit_errors: int

    @property
    def lag_total(self) -> int | None:
        """Records still to read over the known partitions; None before any is known."""
        return sum(n for _, n in self.lag) if self.lag else None


@dataclass(frozen=True, slots=True)
class KafkaFigures:
    """The Kafka bus (engine/bus/kafka/bus.py)."""

    brokers: tuple[str, ...]
    topic: str
    topic_partitions: int  # as configured
    dead_lettered: int
    producer: KafkaProducerFigures | None  # None: this process does not publish trades
    group: KafkaGroupFigures | None  # None: this process does not consume


@dataclass(frozen=True, slots=True)
class AmqpLink:
    """One of the RabbitMQ bus's connections."""

    name: str  # "publisher" | "consumer"
    state: str  # "up" | "closed" | "down" | "connecting"
    down_for: float | None  # seconds, while down
    reconnects: int


@dataclass(frozen=True, slots=True)
class RabbitPublisherFigures:
    """The publisher with its confirms (engine/bus/rabbitmq/publisher.py)."""

    publish_per_s: float  # messages handed to the publisher
    confirm_per_s: float
    confirm_p50: float | None  # publish -> broker confirm, over the last two ticks
    confirm_p99: float | None
    unconfirmed: int  # messages kept until the broker confirms them
    buffered_bytes: int  # their size
    republished: int  # written again after a reconnect
    blocked_reason: str | None  # while the broker's flow control holds us


@dataclass(frozen=True, slots=True)
class RabbitConsumerFigures:
    """The consumer (engine/bus/rabbitmq/consumer.py)."""

    consume_per_s: float
    unacked: int  # delivered, not yet acknowledged
    queue_consumers: int | None  # a queue's consumers (a stream does not tell: None)
    acked_offset: int | None  # a stream's last acknowledged offset
    replaying: bool  # re-reading a stream up to its checkpoint, without emitting
    replayed: int | None  # messages re-read so (streams)
    dead_lettered: int
    dead_letter_errors: int


@dataclass(frozen=True, slots=True)
class RabbitFigures:
    """The RabbitMQ bus (engine/bus/rabbitmq/bus.py)."""

    links: tuple[AmqpLink, ...]
    queue_type: str  # "stream" | "quorum" | "classic"
    queue: str
    publisher: RabbitPublisherFigures | None  # None: this process does not publish
    consumer: RabbitConsumerFigures | None  # None: this process does not consume


BusDetail = KafkaFigures | RabbitFigures


@dataclass(frozen=True, slots=True)
class BusFigures:
    kind: str
    connected: bool
    published: int
    published_per_s: float
    consumed: int
    consumed_per_s: float
    queue_depth: int
    queue_capacity: int
    publish_errors: int
    last_error: str | None
    detail: BusDetail | None = None  # what only this kind of bus reports (the memory bus: None)
    # Messages this process still has to read from the bus (Kafka lag, the memory queue), or
    # None when the bus cannot tell.
    backlog: int | None = None
    queue_unit: str = "messages"  # what queue_depth/queue_capacity count (bytes, flushes, ...)
    partitions: tuple[PartitionLag, ...] = ()  # the partitions it reads (Kafka)


@dataclass(frozen=True, slots=True)
class AnalyzerFigures:
    trades: int
    trades_per_s: float
    symbols: int
    snapshots: int
    late: int
    watermark_ms: int | None
    latency_p50: float | None  # seconds, trade receive -> applied to the windows, recent
    latency_p99: float | None
    latency_p50_all: float | None  # over the whole run
    latency_p99_all: float | None
    replayed: int = 0  # trades applied without emitting while recovering after a restart
    future_time: int = 0  # dropped: stamped too far after their receive time
    too_old: int = 0  # dropped: older than every window still to be emitted
    # How far the analyzer's event time (its lowest partition watermark) is behind the wall
    # clock, seconds: lateness plus the backlog, for a live feed. None before a watermark.
    behind: float | None = None


@dataclass(frozen=True, slots=True)
class SinkFigures:
    """A sink's health; a figure that does not apply to the sink is None (not shown).

    Declared in the order the Sinks pane shows them."""

    state: str | None = None  # a sink with a server (InfluxDB): "connected", "retrying", ...
    symbols: int | None = None  # the screen's store: symbols it holds
    emitted: int | None = None
    path: str | None = None  # a file sink's file
    written: int | None = None
    pending: int | None = None  # points not written yet: what quitting waits for
    retries: int | None = None
    dropped: int | None = None
    api: str | None = None  # the InfluxDB API in use ("v1", "v2")
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineStats:
    at: float
    uptime: float
    source: SourceFigures
    bus: BusFigures
    analyzer: AnalyzerFigures
    drops: dict[str, int]
    stages: tuple[StageState, ...]
    sinks: dict[str, SinkFigures] = field(default_factory=dict)
    process: ProcessFigures | None = None  # this process's CPU, memory, network (engine/process)
    drop_bytes: dict[str, int] = field(default_factory=dict)  # for drops with a size (frames)
    identity: ProcessIdentity | None = None  # who this process is in the cluster (Kafka)
    cluster: ClusterFigures | None = None  # the deployment's processes (`--role monitor`)


class RateMeter:
    """Per-second rates of monotonic counters between two ticks."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def rate(self, name: str, value: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        prev = self._last.get(name)
        self._last[name] = (now, value)
        if prev is None or now <= prev[0]:
            return 0.0
        return (value - prev[1]) / (now - prev[0])
