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
    details: tuple[tuple[str, str], ...] = ()  # bus-specific lines (lag, confirms, group, ...)
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
class PipelineStats:
    at: float
    uptime: float
    source: SourceFigures
    bus: BusFigures
    analyzer: AnalyzerFigures
    drops: dict[str, int]
    stages: tuple[StageState, ...]
    sinks: dict[str, dict[str, object]] = field(default_factory=dict)
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
