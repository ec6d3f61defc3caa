"""The deployment as a monitor sees it: every process's status record, folded into one picture.

Each process on the Kafka bus (query, analyzer, all, monitor) writes a small JSON record to the
status topic every `kafka.status_interval` seconds (`encode_status`): who it is, its state, its
rates, the lag of every partition it reads, CPU, memory and its last error; one more when it
stops (`state = "stopped"`). A `--role monitor` process reads the topic (`parse_status`
validates every record: they cross a socket) and keeps the latest per process in a
`ClusterView`, which judges each process by the monitor's own clock:

- live: heard from within 1.5 intervals (+0.5 s) of its own interval;
- late: within 2 intervals + 1 s: amber;
- silent: later than that: red (a `kill -9`, a frozen host, a network split);
- stopped: it said so on its way out (kept for a minute, then forgotten).

A process whose analyzer instance id is taken by a newer one (a restart) is replaced by it.
Partitions are owned by whoever claims them in its latest record: a live owner before a late or
silent one; a partition no one claims is red when there are analyzers at all.

Records read from before the monitor started (the topic's last minute) are aged by their Kafka
timestamp (the writer's clock); the ones read live by when they arrived, so clock skew between
hosts only matters for the first seconds of a monitor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from stockup_tui.config import Role
from stockup_tui.engine.drops import ROUTINE_REASONS

if TYPE_CHECKING:
    from stockup_tui.engine.stats import PipelineStats

STATUS_VERSION = 1
ROLES = frozenset(r.value for r in Role)
STATES = frozenset({"running", "stopping", "stopped"})
MAX_TEXT = 300  # host, instance, error: longer is cut (the screen shows one line anyway)
MAX_PARTITIONS = 10_000
#: A monitor reads this much of the status topic back when it starts.
LOOKBACK_S = 60.0
FORGET_SILENT_S = 600.0
FORGET_STOPPED_S = 60.0


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who a process is in the cluster; `key` is unique per run (host, pid, start time)."""

    role: str
    host: str
    pid: int
    started_ms: int
    instance: str = ""  # the Kafka static member id of a consumer ("" otherwise)

    @property
    def key(self) -> str:
        return f"{self.host}/{self.pid}/{self.started_ms}"

    @property
    def name(self) -> str:
        """What a person calls it: the analyzer's stable instance id, else host:pid."""
        return self.instance or f"{self.host}:{self.pid}"


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    partition: int
    messages: int  # records still to read
    trades: int  # estimated: messages x the trades per record seen so far
    seconds: float | None  # how old the newest record read is while behind (0: caught up)


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """One validated status record."""

    identity: ProcessIdentity
    at_ms: int  # the writer's clock
    interval: float  # seconds until its next record
    state: str
    source_per_s: float  # trades/s out of the parser (query, all)
    published_per_s: float  # bus records/s acknowledged
    analyzed_per_s: float  # trades/s into the windows (analyzer, all)
    snapshots: int
    drops: int  # every reason but the routine ones (duplicates)
    cpu_percent: float
    rss_bytes: int
    error: str | None
    lag: tuple[PartitionStatus, ...] = ()

    @property
    def key(self) -> str:
        return self.identity.key

    @property
    def lag_trades(self) -> int:
        return sum(p.trades for p in self.lag)

    @property
    def lag_seconds(self) -> float | None:
        known = [p.seconds for p in self.lag if p.seconds is not None]
        return max(known) if known else None


def status_from_stats(
    stats: PipelineStats, identity: ProcessIdentity, *, state: str, interval: float
) -> ProcessStatus:
    """This process's record, from the stats the pipeline rebuilds once a second."""
    an, bus = stats.analyzer, stats.bus
    # Trades per bus record so far: lag in records times it estimates the lag in trades.
    per_record = an.trades / bus.consumed if bus.consumed else 0.0
    error = stats.source.last_error or bus.last_error
    if error is None:
        error = next((s.last_error for s in stats.stages if s.last_error), None)
    proc = stats.process
    return ProcessStatus(
        identity=identity,
        at_ms=int(stats.at * 1000),
        interval=interval,
        state=state,
        source_per_s=stats.source.trades_per_s,
        published_per_s=bus.published_per_s,
        analyzed_per_s=an.trades_per_s,
        snapshots=an.snapshots,
        drops=sum(n for reason, n in stats.drops.items() if reason not in ROUTINE_REASONS),
        cpu_percent=proc.cpu_percent if proc else 0.0,
        rss_bytes=proc.rss_bytes if proc else 0,
        error=error[:MAX_TEXT] if error else None,
        lag=tuple(
            PartitionStatus(p.partition, p.messages, round(p.messages * per_record), p.seconds)
            for p in bus.partitions
        ),
    )


def encode_status(status: ProcessStatus) -> bytes:
    ident = status.identity
    return orjson.dumps(
        {
            "v": STATUS_VERSION,
            "role": ident.role,
            "host": ident.host,
            "pid": ident.pid,
            "started": ident.started_ms,
            "instance": ident.instance,
            "at": status.at_ms,
            "interval": status.interval,
            "state": status.state,
            "source_per_s": status.source_per_s,
            "published_per_s": status.published_per_s,
            "analyzed_per_s": status.analyzed_per_s,
            "snapshots": status.snapshots,
            "drops": status.drops,
            "cpu": status.cpu_percent,
            "rss": status.rss_bytes,
            "error": status.error,
            "lag": [[p.partition, p.messages, p.trades, p.seconds] for p in status.lag],
        }
    )


# -- reading (untrusted: another process, or anyone who can write to the topic) ----------------


def _int(obj: Mapping[str, Any], key: str, hi: int = 2**63 - 1) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= hi:
        raise ValueError(f"status {key}: expected an integer 0..{hi}")
    return value


def _num(value: Any, what: str, hi: float = 1e15) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= hi:
        raise ValueError(f"status {what}: expected a number 0..{hi:g}")
    return float(value)


def _text(obj: Mapping[str, Any], key: str, *, empty: bool = True) -> str:
    value = obj.get(key)
    if type(value) is not str or (not empty and not value):
        raise ValueError(f"status {key}: expected a string")
    return value[:MAX_TEXT]


def _choice(obj: Mapping[str, Any], key: str, allowed: frozenset[str]) -> str:
    value = obj.get(key)
    if type(value) is not str or value not in allowed:
        raise ValueError(f"status {key}: expected one of {', '.join(sorted(allowed))}")
    return str(value)


def _lag(value: Any) -> tuple[PartitionStatus, ...]:
    if type(value) is not list or len(value) > MAX_PARTITIONS:
        raise ValueError(f"status lag: expected a list of at most {MAX_PARTITIONS} partitions")
    out = []
    for item in value:
        if type(item) is not list or len(item) != 4:
            raise ValueError("status lag: each item is [partition, records, trades, seconds]")
        part, messages, trades, seconds = item
        for n, what in ((part, "partition"), (messages, "records"), (trades, "trades")):
            if type(n) is not int or not 0 <= n < 2**63:
                raise ValueError(f"status lag {what}: expected an integer >= 0")
        out.append(
            PartitionStatus(
                part, messages, trades, None if seconds is None else _num(seconds, "lag seconds")
            )
        )
    return tuple(out)


def parse_status(value: bytes) -> ProcessStatus:
    """A status record, validated; ValueError says what is wrong (counted by the caller)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"status record is not JSON: {exc}") from None
    if type(obj) is not dict or obj.get("v") != STATUS_VERSION:
        raise ValueError(f'status record must be an object with "v": {STATUS_VERSION}')
    error = obj.get("error")
    if error is not None and type(error) is not str:
        raise ValueError("status error: expected a string or null")
    identity = ProcessIdentity(
        role=_choice(obj, "role", ROLES),
        host=_text(obj, "host", empty=False),
        pid=_int(obj, "pid", 2**31),
        started_ms=_int(obj, "started"),
        instance=_text(obj, "instance"),
    )
    return ProcessStatus(
        identity=identity,
        at_ms=_int(obj, "at"),
        interval=min(60.0, max(0.2, _num(obj.get("interval"), "interval", 3600))),
        state=_choice(obj, "state", STATES),
        source_per_s=_num(obj.get("source_per_s"), "source_per_s"),
        published_per_s=_num(obj.get("published_per_s"), "published_per_s"),
        analyzed_per_s=_num(obj.get("analyzed_per_s"), "analyzed_per_s"),
        snapshots=_int(obj, "snapshots"),
        drops=_int(obj, "drops"),
        cpu_percent=_num(obj.get("cpu"), "cpu", 1e6),
        rss_bytes=_int(obj, "rss"),
        error=error[:MAX_TEXT] if error else None,
        lag=_lag(obj.get("lag")),
    )


# -- the picture --------------------------------------------------------------------------------

LIVE, LATE, SILENT, STOPPED = "live", "late", "silent", "stopped"


def health_of(status: ProcessStatus, age: float) -> str:
    """How a process looks after `age` seconds without a record (see the module docstring)."""
    if status.state == "stopped":
        return STOPPED
    if age <= status.interval * 1.5 + 0.5:
        return LIVE
    if age <= status.interval * 2 + 1.0:
        return LATE
    return SILENT


@dataclass(frozen=True, slots=True)
class ProcessRow:
    status: ProcessStatus
    health: str
    age: float  # seconds since its latest record (monitor's clock)
    this: bool  # the monitor itself

    @property
    def name(self) -> str:
        return self.status.identity.name


@dataclass(frozen=True, slots=True)
class PartitionRow:
    partition: int
    owner: str | None  # the owning process's name; None: nobody claims it
    health: str | None  # the owner's
    messages: int = 0
    trades: int = 0
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    topic: str
    processes: tuple[ProcessRow, ...]
    partitions: tuple[PartitionRow, ...]
    invalid: int = 0  # status records refused

    def count(self, health: str) -> int:
        return sum(1 for row in self.processes if row.health == health)

    @property
    def analyzers(self) -> int:
        return sum(
            1
            for row in self.processes
            if Role(row.status.identity.role).analyzes and row.health != STOPPED
        )


_ORDER = {"query": 0, "all": 1, "analyzer": 2, "monitor": 3}
_RANK = {LIVE: 0, LATE: 1, SILENT: 2}


class ClusterView:
    """The latest record per process, and who owns which partition (see the module docstring)."""

    def __init__(self, topic: str, partitions: int, own_key: str | None = None) -> None:
        self.topic = topic
        self.partitions = partitions
        self.own_key = own_key
        self.invalid = 0
        self._latest: dict[str, tuple[ProcessStatus, float]] = {}

    def add(self, status: ProcessStatus, seen: float) -> None:
        """`seen`: when it was written, on the monitor's clock (epoch seconds)."""
        key = status.key
        old = self._latest.get(key)
        if old is not None and old[0].at_ms > status.at_ms:
            return  # an older record read late (the lookback): keep the newer
        instance = status.identity.instance
        if instance:  # a restarted analyzer takes its predecessor's place
            same = [
                other
                for other, (st, _) in self._latest.items()
                if other != key and st.identity.instance == instance
            ]
            started = status.identity.started_ms
            if any(self._latest[other][0].identity.started_ms > started for other in same):
                return  # a newer process already holds that id
            for other in same:
                del self._latest[other]
        self._latest[key] = (status, seen)

    def figures(self, now: float) -> ClusterFigures:
        rows = []
        for key, (status, seen) in list(self._latest.items()):
            age = max(0.0, now - seen)
            health = health_of(status, age)
            forget = FORGET_STOPPED_S if health == STOPPED else FORGET_SILENT_S
            if age > forget:
                del self._latest[key]
                continue
            rows.append(ProcessRow(status, health, age, key == self.own_key))
        rows.sort(key=lambda r: (_ORDER[r.status.identity.role], r.name, r.status.key))
        claims: dict[int, tuple[tuple[int, int], ProcessRow, PartitionStatus]] = {}
        for row in rows:
            if row.health == STOPPED:
                continue
            rank = (_RANK[row.health], -row.status.at_ms)
            for part in row.status.lag:
                held = claims.get(part.partition)
                if held is None or rank < held[0]:
                    claims[part.partition] = (rank, row, part)
        count = max([self.partitions, *(p + 1 for p in claims)])
        parts = []
        for p in range(count):
            held = claims.get(p)
            if held is None:
                parts.append(PartitionRow(p, None, None))
            else:
                _, row, lag = held
                parts.append(
                    PartitionRow(p, row.name, row.health, lag.messages, lag.trades, lag.seconds)
                )
        return ClusterFigures(self.topic, tuple(rows), tuple(parts), self.invalid)
