"""An engine that serves fixed snapshots and figures: the screen's input without the moving
parts (snapshot tests, and app tests of what the screen does with the engine's answers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from stockup_tui.engine.cluster import (
    LIVE,
    SILENT,
    ClusterFigures,
    PartitionRow,
    PartitionStatus,
    ProcessIdentity,
    ProcessRow,
    ProcessStatus,
)
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import PipelineStats
from tests.helpers import analyzer_figures, bus_figures, make_stats, source_figures

SYMBOLS = ["AAPL", "MSFT", "BTC:USD"]


class FrozenEngine:
    """Serves fixed snapshots and figures: the screen's input, without the moving parts."""

    def __init__(self, latest: Mapping[str, SymbolSnapshot], stats: PipelineStats) -> None:
        self._latest = latest
        self._stats = stats
        self.symbols: list[str] = []
        self.previous_close: dict[str, float] = {}
        self.tape: dict[str, list[tuple[int, float, float]]] = {}

    @property
    def latest(self) -> Mapping[str, SymbolSnapshot]:
        return self._latest

    @property
    def stats(self) -> PipelineStats:
        return self._stats

    def start(self) -> None:
        return None

    def stop(self, timeout: float | None = None) -> bool:
        return True

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self.symbols = list(symbols)

    control_version = 0

    def recent_trades(self, symbol: str, n: int = 20) -> list[tuple[int, float, float]]:
        return self.tape.get(symbol, [])[:n]

    def stop_progress(self) -> str:
        return "stopped"

    @property
    def lost_at_exit(self) -> Mapping[str, int]:
        return {}


def fixed_stats(latest: Mapping[str, SymbolSnapshot]) -> PipelineStats:
    """A replay going well: what the snapshot tests' screens show."""
    return make_stats(
        at=0.0,
        uptime=42.0,
        source=source_figures(
            kind="replay",
            endpoint="session.jsonl",
            reconnects=2,
            last_gap=0.05,
            max_gap=0.12,
            frames=400,
            frames_per_s=95.0,
            trades=2600,
            trades_per_s=1200.0,
            last_frame_age=0.1,
            subscribed=tuple(SYMBOLS),
        ),
        bus=bus_figures(
            published=1200,
            published_per_s=100.0,
            consumed=1200,
            consumed_per_s=100.0,
            queue_depth=0,
            queue_unit="flushes",
        ),
        analyzer=analyzer_figures(
            trades=2600,
            trades_per_s=1200.0,
            symbols=len(latest),
            snapshots=500,
            watermark_ms=None,
            latency_p50=0.0021,
            latency_p99=0.0094,
            latency_p50_all=0.0021,
            latency_p99_all=0.0094,
        ),
        drops={"duplicate": 130, "malformed_json": 8},
        sinks={},
    )


def _status(
    role: str,
    pid: int,
    instance: str = "",
    *,
    lag: tuple[tuple[int, int, float | None], ...] = (),
    state: str = "running",
    error: str | None = None,
    source: float = 0.0,
    analyzed: float = 0.0,
) -> ProcessStatus:
    return ProcessStatus(
        identity=ProcessIdentity(role, "box", pid, 1_700_000_000_000, instance),
        at_ms=1_700_000_100_000,
        interval=2.0,
        state=state,
        source_per_s=source,
        published_per_s=source / 40,
        analyzed_per_s=analyzed,
        snapshots=4_200,
        drops=0,
        cpu_percent=12.0 if role != "monitor" else 3.0,
        rss_bytes=70 * 1024 * 1024,
        error=error,
        lag=tuple(PartitionStatus(p, n, n * 40, s) for p, n, s in lag),
    )


def cluster_stats(latest: Mapping[str, SymbolSnapshot]) -> PipelineStats:
    """A monitor's figures: a query, two analyzers of which one went silent (kill -9) while
    holding partitions 3-5, and the monitor itself."""
    stats = fixed_stats(latest)
    query = _status("query", 101, source=3_000.0)
    live = _status(
        "analyzer", 102, "box-0", lag=((0, 0, 0.0), (1, 2, 0.3), (2, 0, 0.0)), analyzed=1_500.0
    )
    gone = _status(
        "analyzer",
        103,
        "box-1",
        lag=((3, 12, 1.1), (4, 0, 0.0), (5, 3, 0.4)),
        analyzed=1_500.0,
        error="Kafka poll failed: [Broker] no leader for partition 4",
    )
    monitor = _status("monitor", 104)
    rows = (
        ProcessRow(query, LIVE, 0.4, False),
        ProcessRow(live, LIVE, 0.9, False),
        ProcessRow(gone, SILENT, 7.2, False),
        ProcessRow(monitor, LIVE, 0.2, True),
    )
    parts = tuple(
        PartitionRow(p.partition, row.name, row.health, p.messages, p.trades, p.seconds)
        for row in rows[1:3]
        for p in row.status.lag
    )
    cluster = ClusterFigures("stockup.trades", rows, parts)
    source = replace(
        stats.source, kind="metrics topic", endpoint="stockup.metrics", trades=0, trades_per_s=0
    )
    bus = replace(stats.bus, kind="kafka", queue_unit="bytes", queue_capacity=67_108_864)
    return replace(stats, source=source, bus=bus, cluster=cluster, stages=())
