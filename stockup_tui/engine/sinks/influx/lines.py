"""InfluxDB line protocol for window metrics and operational figures (pure functions).

Schema (documented in the README, checked by the Grafana dashboard tests):

- `window_metrics`, tags `symbol` and `window` (e.g. `1m`), fields `count` (integer), `volume`,
  `first`, `last`, `min`, `max`, `mean`, `vwap`, `change`, `change_pct`, `rate` (floats; price
  fields are absent when the window is empty, `vwap` when the volume is 0), timestamp = the
  window end (`SymbolSnapshot.ts_ms`) in milliseconds. One point per symbol per window per
  emitted snapshot; the same symbol, window and time overwrite, so a replay is idempotent.
- `pipeline_ops`, tags `host`, `role` and `instance` (one per process of a deployment: the
  analyzer's Kafka instance id, else `host:pid`): the process's figures at wall-clock time.
- `pipeline_drops`, tags `host`, `role`, `instance`, `reason`, field `count`: cumulative drops.

Window points are the hot path (up to tens of thousands a second while a recording replays), so
they are formatted here directly; the escaping and number formatting are influxdb-client's
(`Point.to_line_protocol`), and a property test checks that both produce the same bytes. The
low-rate ops points are built with `Point` itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from stockup_tui.engine.model import SymbolSnapshot, window_label
from stockup_tui.engine.stats import (
    BusDetail,
    KafkaFigures,
    KafkaGroupFigures,
    KafkaProducerFigures,
    PipelineStats,
    RabbitConsumerFigures,
    RabbitFigures,
    RabbitPublisherFigures,
    SinkFigures,
)

WINDOW_MEASUREMENT = "window_metrics"
OPS_MEASUREMENT = "pipeline_ops"
DROPS_MEASUREMENT = "pipeline_drops"

# The same tables influxdb-client's Point uses (tag keys/values and field keys).
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
# A measurement name's (no "=" to escape).
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_FLOAT_FIELDS_BEFORE_COUNT = ("change", "change_pct")
_FLOAT_FIELDS_AFTER_COUNT = ("first", "last", "max", "mean", "min", "rate", "volume", "vwap")


def escape_tag(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    return out + " " if out.endswith("\\") else out


def format_float(value: float | None) -> str | None:
    """As influxdb-client writes a float field: shortest repr, no trailing `.0`; None/NaN/inf
    are left out (line protocol has no such values)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    s = repr(value)
    return s[:-2] if s.endswith(".0") else s


class WindowLines:
    """Encodes emitted snapshots as `window_metrics` lines; caches the per-series prefix."""

    def __init__(self, measurement: str = WINDOW_MEASUREMENT, cache_limit: int = 50_000) -> None:
        self.measurement = measurement.translate(_ESCAPE_MEASUREMENT)
        self._prefix: dict[tuple[str, int], str] = {}
        self._cache_limit = cache_limit

    def prefix(self, symbol: str, window_ms: int) -> str:
        key = (symbol, window_ms)
        p = self._prefix.get(key)
        if p is None:
            if len(self._prefix) >= self._cache_limit:
                self._prefix.clear()
            p = f"{self.measurement},symbol={escape_tag(symbol)},window={window_label(window_ms)} "
            self._prefix[key] = p
        return p

    def lines(self, snap: SymbolSnapshot) -> list[str]:
        out = []
        ts = str(int(snap.ts_ms))
        for wm in snap.windows:
            parts = []
            for name in _FLOAT_FIELDS_BEFORE_COUNT:
                s = format_float(getattr(wm, name))
                if s is not None:
                    parts.append(f"{name}={s}")
            parts.append(f"count={int(wm.count)}i")
            for name in _FLOAT_FIELDS_AFTER_COUNT:
                s = format_float(getattr(wm, name))
                if s is not None:
                    parts.append(f"{name}={s}")
            out.append(f"{self.prefix(snap.symbol, wm.window_ms)}{','.join(parts)} {ts}")
        return out


def window_point(snap: SymbolSnapshot, index: int) -> Point:
    """The same point as `WindowLines` builds, through influxdb-client (the reference)."""
    wm = snap.windows[index]
    p: Point = (
        Point(WINDOW_MEASUREMENT)
        .tag("symbol", snap.symbol)
        .tag("window", window_label(wm.window_ms))
        .field("count", int(wm.count))
    )
    for name in _FLOAT_FIELDS_BEFORE_COUNT + _FLOAT_FIELDS_AFTER_COUNT:
        value = getattr(wm, name)
        p.field(name, None if value is None else float(value))
    p.time(int(snap.ts_ms), WritePrecision.MS)  # sets the time (and returns the point, untyped)
    return p


# -- operational figures --------------------------------------------------------------------------

# The bus's own figures (engine/stats.py) and their `pipeline_ops` fields. The names are the
# ones the dashboards chart (`bus_*_ms` are durations, written in milliseconds): renaming a
# dataclass field must not rename its InfluxDB field. All are floats, as they were when they
# were parsed out of the screen's text: a field keeps its type within an InfluxDB shard.
_DETAIL_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {
    KafkaFigures: (
        ("topic_partitions", "bus_topic_partitions"),
        ("dead_lettered", "bus_dlq"),
    ),
    KafkaProducerFigures: (
        ("acked", "bus_produce_acked"),
        ("in_flight", "bus_produce_in_flight"),
        ("resent", "bus_produce_resent"),
        ("retries_per_s", "bus_produce_retries_per_s"),
        ("ack_p50", "bus_ack_p50_ms"),
        ("ack_p99", "bus_ack_p99_ms"),
    ),
    KafkaGroupFigures: (
        ("lag_total", "bus_lag"),
        ("commits", "bus_commits"),
        ("commit_p50", "bus_commits_p50_ms"),
        ("commit_errors", "bus_commits_errors"),
    ),
    RabbitPublisherFigures: (
        ("publish_per_s", "bus_publish_per_s"),
        ("confirm_per_s", "bus_confirmed_per_s"),
        ("confirm_p50", "bus_confirm_p50_ms"),
        ("confirm_p99", "bus_confirm_p99_ms"),
        ("unconfirmed", "bus_unconf"),
        ("buffered_bytes", "bus_unconf_bytes"),
        ("republished", "bus_resent"),
    ),
    RabbitConsumerFigures: (
        ("consume_per_s", "bus_consume_per_s"),
        ("unacked", "bus_unacked"),
        ("queue_consumers", "bus_readers"),
        ("acked_offset", "bus_offset"),
        ("replayed", "bus_replayed"),
        ("dead_lettered", "bus_dlq"),
        ("dead_letter_errors", "bus_dlq_errors"),
    ),
    RabbitFigures: (),
}


def bus_fields(detail: BusDetail | None) -> dict[str, float]:
    """The known figures of a bus's own report (and its producer/consumer parts), as fields."""
    match detail:
        case KafkaFigures():
            parts: tuple[object, ...] = (detail, detail.producer, detail.group)
        case RabbitFigures():
            parts = (detail, detail.publisher, detail.consumer)
        case _:
            return {}
    fields: dict[str, float] = {}
    for part in parts:
        if part is None:
            continue
        for attr, name in _DETAIL_FIELDS[type(part)]:
            value = getattr(part, attr)
            if value is not None:
                fields[name] = float(value) * (1000.0 if name.endswith("_ms") else 1.0)
    return fields


def _seconds_to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else float(seconds) * 1000.0


def ops_points(
    stats: PipelineStats,
    *,
    host: str,
    role: str,
    at_ms: int,
    sink: SinkFigures | None = None,
) -> list[Point]:
    """One `pipeline_ops` point plus one `pipeline_drops` point per drop reason.

    Every field always has the same type (counters integers, rates and latencies floats), so a
    field never conflicts with its earlier points; a figure that is unknown is left out.
    """
    src, bus, an = stats.source, stats.bus, stats.analyzer
    # One series per process of the deployment: the analyzer's stable instance id, else host:pid.
    instance = stats.identity.name if stats.identity is not None else host
    p: Point = Point(OPS_MEASUREMENT).tag("host", host).tag("role", role).tag("instance", instance)
    ints: dict[str, int] = {
        "source_connected": int(bool(src.connected)),
        "source_reconnects": src.reconnects,
        "source_frames": src.frames,
        "source_trades": src.trades,
        "bus_connected": int(bool(bus.connected)),
        "bus_published": bus.published,
        "bus_consumed": bus.consumed,
        "bus_queue_depth": bus.queue_depth,
        "bus_publish_errors": bus.publish_errors,
        "analyzer_trades": an.trades,
        "analyzer_symbols": an.symbols,
        "analyzer_snapshots": an.snapshots,
        "analyzer_late": an.late,
        "analyzer_replayed": an.replayed,
        "analyzer_future_time": an.future_time,
        "analyzer_too_old": an.too_old,
        "drops_total": sum(stats.drops.values()),
        "stage_restarts": sum(s.restarts for s in stats.stages),
    }
    floats: dict[str, float | None] = {
        "uptime_s": stats.uptime,
        "source_frames_per_s": src.frames_per_s,
        "source_trades_per_s": src.trades_per_s,
        "source_max_gap_s": src.max_gap,
        "bus_published_per_s": bus.published_per_s,
        "bus_consumed_per_s": bus.consumed_per_s,
        "analyzer_trades_per_s": an.trades_per_s,
        "analyzer_behind_s": an.behind,
        "latency_p50_ms": _seconds_to_ms(an.latency_p50),
        "latency_p99_ms": _seconds_to_ms(an.latency_p99),
        "latency_p50_all_ms": _seconds_to_ms(an.latency_p50_all),
        "latency_p99_all_ms": _seconds_to_ms(an.latency_p99_all),
    }
    proc = getattr(stats, "process", None)
    if proc is not None:
        floats["cpu_percent"] = proc.cpu_percent
        floats["net_sent_per_s"] = proc.net_sent_per_s
        floats["net_recv_per_s"] = proc.net_recv_per_s
        ints["rss_bytes"] = proc.rss_bytes
        ints["threads"] = proc.threads
        ints["net_sent_bytes"] = proc.net_sent_bytes
        ints["net_recv_bytes"] = proc.net_recv_bytes
    if bus.backlog is not None:
        ints["bus_backlog"] = bus.backlog
    if bus.partitions:  # a consumer's partitions: how many, and how far behind the worst is
        ints["partitions_owned"] = len(bus.partitions)
        behind = [p.seconds for p in bus.partitions if p.seconds is not None]
        if behind:
            floats["lag_max_s"] = max(behind)
    floats.update(bus_fields(bus.detail))
    if sink is not None:  # the InfluxDB sink's own figures
        for name, value in (
            ("written", sink.written),
            ("pending", sink.pending),
            ("dropped", sink.dropped),
            ("retries", sink.retries),
        ):
            if value is not None:
                ints[f"influx_{name}"] = value
    for name, n in ints.items():
        p.field(name, int(n))
    for name, x in floats.items():
        p.field(name, None if x is None else float(x))
    points = [p.time(at_ms, WritePrecision.MS)]
    for reason, count in sorted(stats.drops.items()):
        points.append(
            Point(DROPS_MEASUREMENT)
            .tag("host", host)
            .tag("role", role)
            .tag("instance", instance)
            .tag("reason", reason)
            .field("count", int(count))
            .time(at_ms, WritePrecision.MS)
        )
    return points


def point_lines(points: Iterable[Point]) -> list[str]:
    return [line for line in (p.to_line_protocol() for p in points) if line]
