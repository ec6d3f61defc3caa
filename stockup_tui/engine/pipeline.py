"""One process's engine: its parts, their lifecycle and its figures.

Data flows one way: source -> parse -> bus -> analyzer -> sinks. The stages' bodies live in
`engine/stages/` (`publish`: source -> bus, flushes by size or time, watermarks; `analyze`: bus
-> windows -> sinks; `topics`: Kafka's control, status and metrics topics); `engine/wiring.py`
builds a pipeline from the settings; `engine/supervisor.py` runs every stage as a task that
restarts with backoff. What is left here: which stages a role runs, how `stop()` drains (the
source stops, pending trades are flushed, the bus is closed and consumed to the end, sinks are
closed), and a clock that turns counters into one immutable `PipelineStats` per tick. Those
two read every part, which is why they stay here and the module is a little over 400 lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from stockup_tui.config import Role, Settings
from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.bus.base import Bus, HasMetricsTopic, HasStatusTopic, SharesWatchlist
from stockup_tui.engine.bus.memory import MemoryBus
from stockup_tui.engine.cluster import ClusterView, ProcessIdentity
from stockup_tui.engine.drops import Drops, describe_losses, is_loss
from stockup_tui.engine.heap import release_free_heap
from stockup_tui.engine.latency import RecentLatency
from stockup_tui.engine.process import ProcessMeter
from stockup_tui.engine.simulator import SimulatorThread
from stockup_tui.engine.sinks.base import Sink, StartedSink
from stockup_tui.engine.sinks.snapshots import SnapshotStore
from stockup_tui.engine.sources.base import TradeSource
from stockup_tui.engine.sources.dedup import DuplicateFilter
from stockup_tui.engine.sources.finnhub import FinnhubClient
from stockup_tui.engine.sources.parser import FrameParser
from stockup_tui.engine.sources.recording import FrameRecorder, ReplaySource
from stockup_tui.engine.stages.analyze import AnalyzerStage
from stockup_tui.engine.stages.publish import Publisher
from stockup_tui.engine.stages.topics import (
    MonitorStage,
    StatusStage,
    follow_watchlist,
    watch_cluster,
)
from stockup_tui.engine.stats import (
    AnalyzerFigures,
    BusFigures,
    PipelineStats,
    RateMeter,
    SourceFigures,
)
from stockup_tui.engine.supervisor import Supervisor

log = logging.getLogger(__name__)


_BUS_NAMES = {"kafka": "Kafka", "rabbitmq": "RabbitMQ", "memory": "the in-process bus"}


class Pipeline:
    """The whole engine for one process. Build with `engine.wiring.build_pipeline`."""

    def __init__(
        self,
        settings: Settings,
        source: TradeSource,
        bus: Bus,
        *,
        sinks: Sequence[Sink] = (),
        drops: Drops | None = None,
        simulator: SimulatorThread | None = None,
        recorder: FrameRecorder | None = None,
        live_interval: float | None = 0.1,
        live_points: int = 0,
    ) -> None:
        self.settings = settings
        # The watchlist now (Settings is frozen: `set_symbols` replaces this tuple whole, so a
        # reader on another thread sees one list or the other).
        self.symbols: tuple[str, ...] = tuple(settings.symbols)
        self.drops = drops or Drops()
        self.source = source
        self.bus = bus
        self.simulator = simulator
        self.recorder = recorder
        # The receive clock follows the wall clock between frames (not for a replay).
        self.live = not isinstance(source, ReplaySource)
        dedup = (
            DuplicateFilter(settings.source.dedup_horizon)
            if settings.source.dedup_horizon > 0
            else None
        )
        interval = settings.emit_interval_ms
        lateness_ms = round(settings.source.lateness * 1000)
        max_future_ms = round(settings.source.max_future * 1000)
        self.parser = FrameParser(
            self.drops,
            dedup,
            settings.source.max_frame_bytes,
            max_future_ms=max_future_ms,
            # Older than this behind the receive clock, no window still open can hold a trade
            # (the analyzer would call it too_old too; see engine/analyzer/analyzer.py).
            max_age_ms=lateness_ms + max(settings.windows_ms) + 2 * interval,
        )
        if self.live:  # a live feed passes the watchlist only (a replay: everything)
            self.parser.set_subscribed(settings.symbols, time.time())
        self.analyzer = Analyzer(
            settings.windows_ms, interval, max_future_ms, max_symbols=settings.max_symbols
        )
        self.snapshots = SnapshotStore()
        self.sinks: list[Sink] = [self.snapshots, *sinks]
        if isinstance(bus, HasMetricsTopic) and bus.metrics_sink is not None:
            self.sinks.append(bus.metrics_sink)  # snapshots for the monitors
        self.latency = RecentLatency()
        self.live_interval = live_interval
        self.live_points = live_points  # price-series points per window in live snapshots
        self.publisher = Publisher(
            settings, self.parser, bus, live=self.live, encode=not isinstance(bus, MemoryBus)
        )
        self.consumer = AnalyzerStage(
            self.analyzer, bus, self.sinks, self.drops, self.latency, live=self.live
        )
        # Watchlists taken from the control topic (another screen changed it): a screen on this
        # process follows when it grows.
        self.control_version = 0
        self.monitor: MonitorStage | None = None  # `--role monitor`: the metrics topic
        # Who this process is in the cluster (a bus with a status topic: Kafka), set at start;
        # a monitor's picture of the whole deployment, from that topic.
        self.identity: ProcessIdentity | None = None
        self.status: StatusStage | None = None
        self.cluster: ClusterView | None = None
        self.stages = Supervisor()
        self._rates = RateMeter()
        self._process = ProcessMeter()
        self._started_at = time.monotonic()
        self._stopping = False
        self.stop_phase: str | None = None  # what stop() waits for now (see stop_progress)
        self.lost_at_exit: dict[str, int] = {}  # losses counted while stopping, by reason
        self._source_done = asyncio.Event()
        self.stats: PipelineStats = self._build_stats()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.simulator is not None:
            url = await asyncio.to_thread(self.simulator.start)
            assert isinstance(self.source, FinnhubClient)
            self.source.set_url(url)
        await self.bus.start()
        for sink in self.sinks:  # sinks with a thread of their own (InfluxDB) start it here
            if isinstance(sink, StartedSink):
                sink.start()
        self._started_at = time.monotonic()
        role = self.settings.role
        spawn = self.stages.spawn
        bus = self.bus
        if role.has_feed:
            spawn("source", self._run_source, finite=True)
            spawn("publisher", self.publisher.run)
        else:
            self._source_done.set()
        if role.analyzes:
            spawn("analyzer", self.consumer.run, finite=True)
        else:
            self.consumer.done.set()
        if role == Role.MONITOR:
            assert isinstance(bus, HasMetricsTopic)  # a monitor's bus is Kafka (Settings)
            settings = self.settings
            self.monitor = MonitorStage(
                bus,
                self.snapshots,
                longest_ms=max(settings.windows_ms),
                emit_interval_ms=settings.emit_interval_ms,
                max_symbols=settings.max_symbols,
                live_points=self.live_points,
            )
            spawn("monitor", self.monitor.run)
        if role.has_feed and isinstance(bus, SharesWatchlist):
            watched = bus
            spawn(
                "control", lambda: follow_watchlist(watched, lambda: self.symbols, self._followed)
            )
        if isinstance(bus, HasStatusTopic):
            self.identity = ProcessIdentity(
                role=role,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_ms=int(time.time() * 1000),
                instance=bus.instance(),
            )
            self.status = StatusStage(
                bus,
                self.identity,
                self.settings.kafka.status_interval,
                fresh_stats=self.fresh_stats,
                final_stats=self._build_stats,
            )
            spawn("status", self.status.run)
            if role == Role.MONITOR:
                kafka = self.settings.kafka
                view = ClusterView(kafka.topic, kafka.partitions, own_key=self.identity.key)
                self.cluster = view
                status_bus = bus
                spawn("cluster", lambda: watch_cluster(status_bus, view, self.drops))
        spawn("clock", self._run_clock)
        log.info(
            "pipeline started: source=%s bus=%s symbols=%d windows=%s",
            self.source.stats.kind,
            self.bus.stats.kind,
            len(self.symbols),
            ",".join(self.settings.windows),
        )

    def rest_url(self) -> str | None:
        """Where a screen can ask for previous closes: the simulator's own port, Finnhub's REST
        API for a Finnhub feed (also from a monitor configured for it), else nowhere."""
        if self.simulator is not None and isinstance(self.source, FinnhubClient):
            return self.source.stats.endpoint.replace("ws://", "http://", 1) + "/api/v1"
        if self.settings.source.kind == "finnhub":
            return self.settings.source.rest_url
        return None

    async def wait_source_done(self) -> None:
        """Returns when a finite source (a replay) has delivered everything."""
        await self._source_done.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """Drains and stops everything; safe to call twice. `lost_at_exit` then says what
        could not be delivered; `stop_progress()` says meanwhile what it waits for."""
        if self._stopping:
            return
        self._stopping = True
        before = self.drops.snapshot()
        if self.status is not None:
            self.status.stopping = True
            self.status.say("stopping")
        self.stop_phase = "source"
        await self.source.stop()
        self.stages.cancel("source")
        self.stages.cancel("publisher")
        self.stop_phase = "bus"
        await self.publisher.flush()
        if self.settings.role.has_feed and self.live and not self._source_done.is_set():
            # A live stop closes what the clock has passed; a restart goes on from there.
            await self.publisher.advance_clock(time.time())
        if self.status is not None:
            self.status.say("stopped", farewell=True)
        await self.bus.close()
        self.stop_phase = "analyzer"
        try:
            await asyncio.wait_for(self.consumer.done.wait(), timeout)
        except TimeoutError:
            log.error("analyzer did not drain within %.0fs; stopping it", timeout)
            if self.bus.stats.kind == "memory":  # a network bus keeps them for the next run
                self.drops.add("analyzer_undrained", self.bus.unsent_trades())
        self.stop_phase = "sinks"
        await self.stages.cancel_all()
        if self._keeps_live:
            self._refresh_live()
        self.stats = self._build_stats()  # the final figures, for sinks that report them
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:  # a sink failing to close must not hide the others
                log.error("sink %s failed to close: %s", sink.name, exc)
        if self.recorder is not None:
            self.recorder.close()
        if self.simulator is not None:
            await asyncio.to_thread(self.simulator.stop)
        self.stats = self._build_stats()
        after = self.drops.snapshot()
        self.lost_at_exit = {
            reason: n - before.get(reason, 0)
            for reason, n in after.items()
            if is_loss(reason) and n > before.get(reason, 0)
        }
        self.stop_phase = "stopped"
        if self.lost_at_exit:
            log.error("lost at exit: %s", describe_losses(self.lost_at_exit))
        log.info("pipeline stopped")

    def stop_progress(self) -> str:
        """What `stop()` is waiting for, for a person watching it quit (any thread)."""
        phase = self.stop_phase
        bus = _BUS_NAMES.get(self.bus.stats.kind, self.bus.stats.kind)
        if phase == "bus":
            unsent = self.bus.unsent_trades()
            step = self.bus.stats.closing
            if step is None or step == "sending":
                return f"sending {unsent:,} trades to {bus}" if unsent else f"closing {bus}"
            return f"{step} ({bus})" + (f"; {unsent:,} trades not sent" if unsent else "")
        if phase == "analyzer":
            backlog = self.bus.stats.backlog
            left = f" ({backlog:,} messages left)" if backlog else ""
            return f"the analyzer is finishing what {bus} holds{left}"
        if phase == "sinks":
            pending = []
            for sink in self.sinks:
                n = sink.figures().pending
                if n:
                    pending.append(f"{sink.name} {n:,} points")
            return "writing " + ", ".join(pending) if pending else "closing the sinks"
        if phase == "stopped":
            return "stopped"
        return "stopping the feed"

    def set_symbols(self, symbols: Iterable[str], *, share: bool = True) -> None:
        """Changes the watchlist live: the feed re-subscribes, removed symbols are forgotten.

        Over Kafka, a change made here also goes to the control topic (`share`), from which the
        query process of a split deployment takes it.
        """
        new = list(dict.fromkeys(symbols))
        if share and isinstance(self.bus, SharesWatchlist) and self.settings.role != Role.QUERY:
            self.bus.publish_control(new)
        # The analyzer keeps what the log holds (a removed symbol's windows empty out and it goes
        # quiet by itself); the screen shows the watchlist only.
        self.symbols = tuple(new)
        if self.live:
            self.parser.set_subscribed(new, time.time())
        self.source.set_symbols(new)

    def _followed(self, symbols: list[str]) -> None:
        """A watchlist from the control topic (another screen changed it)."""
        self.set_symbols(symbols, share=False)
        self.control_version += 1

    # -- stages of its own -----------------------------------------------------------------

    async def _run_source(self) -> None:
        publisher = self.publisher
        await self.source.run(publisher.on_frame, publisher.read_rest)
        if not self._source_done.is_set():
            if not self._stopping:
                # A source that ended by itself (a replay): the analyzer closes every symbol's
                # last boundary. A stopped one does not: a restart goes on from there.
                await publisher.flush()
                await publisher.publish_watermark(publisher.clock, final=True)
            self._source_done.set()

    @property
    def _keeps_live(self) -> bool:
        """Live snapshots are refreshed: a screen reads them (headless, nothing does)."""
        return self.live_interval is not None and self.settings.role != Role.MONITOR

    async def _run_clock(self) -> None:
        """Refreshes live snapshots and the stats, on a fixed timer (the screen's, not the
        analyzer's: nothing here changes what is emitted). It ticks at the live interval, no
        faster (each wake-up costs CPU): 10 Hz under the screen; once a second for the stats
        alone (headless: no live snapshots, a tenth of the analyzer's work at a live pace)."""
        tick = 1.0 if self.live_interval is None else max(0.05, min(self.live_interval, 0.5))
        trim_every = max(1, round(10 / tick))  # 10 s: see engine/heap.py
        ticks = 0
        keeps_live = self._keeps_live
        while True:
            await asyncio.sleep(tick)
            ticks += 1
            if keeps_live:
                self._refresh_live()
            self.fresh_stats()  # by the clock, not by ticks: a busy loop makes ticks late
            if ticks % trim_every == 0:
                release_free_heap()

    def fresh_stats(self, max_age: float = 1.0) -> PipelineStats:
        """The stats, rebuilt first when older than `max_age` seconds (never stale figures:
        under load the timer that rebuilds them runs late)."""
        if time.time() - self.stats.at >= max_age:
            self.stats = self._build_stats()
            self.latency.rotate()
        return self.stats

    def _refresh_live(self) -> None:
        self.snapshots.replace(self.analyzer.live_all(self.live_points))

    # -- stats -----------------------------------------------------------------------------

    def _build_stats(self) -> PipelineStats:
        now_m = time.monotonic()
        now = time.time()
        rate = self._rates.rate
        s = self.source.stats
        p = self.parser
        b = self.bus.stats
        a = self.analyzer
        p50, p99 = self.latency.recent()
        p50_all, p99_all = self.latency.overall()
        if self.monitor is not None:  # its source is the metrics topic, not a feed
            s = replace(
                s,
                kind="metrics topic",
                endpoint=self.settings.kafka.metrics_topic,
                connected=b.connected,
                connections=1,
                frames=self.monitor.monitored,
                finished=False,
                last_frame_at=self.monitor.newest_at(),
            )
        return PipelineStats(
            at=now,
            uptime=now_m - self._started_at,
            source=SourceFigures(
                kind=s.kind,
                endpoint=s.endpoint,
                connected=s.connected,
                connections=s.connections,
                reconnects=s.reconnects,
                last_gap=s.last_gap,
                max_gap=s.max_gap,
                frames=s.frames,
                frames_per_s=rate("frames", s.frames, now_m),
                trades=p.trades,
                trades_per_s=rate("trades", p.trades, now_m),
                last_frame_age=(now - s.last_frame_at) if s.last_frame_at else None,
                subscribed=s.subscribed,
                last_error=p.last_error or s.last_error,
                finished=s.finished,
            ),
            bus=BusFigures(
                kind=b.kind,
                connected=b.connected,
                published=b.published_messages,
                published_per_s=rate("published", b.published_messages, now_m),
                consumed=b.consumed_messages,
                consumed_per_s=rate("consumed", b.consumed_messages, now_m),
                queue_depth=b.queue_depth,
                queue_capacity=b.queue_capacity,
                publish_errors=b.publish_errors,
                last_error=b.last_error,
                detail=b.detail,
                backlog=b.backlog,
                queue_unit=b.queue_unit,
                partitions=b.partitions,
            ),
            analyzer=AnalyzerFigures(
                trades=a.ingested,
                trades_per_s=rate("analyzed", a.ingested, now_m),
                symbols=len(a.symbols),
                snapshots=self.snapshots.emitted,
                late=a.late,
                watermark_ms=a.watermark_ms,
                latency_p50=p50,
                latency_p99=p99,
                latency_p50_all=p50_all,
                latency_p99_all=p99_all,
                replayed=self.consumer.replayed,
                future_time=self.drops.get("future_time"),
                too_old=self.drops.get("too_old"),
                behind=None if a.watermark_ms is None else max(0.0, now - a.watermark_ms / 1000),
            ),
            drops=self.drops.snapshot(),
            drop_bytes=self.drops.bytes_snapshot(),
            stages=self.stages.states(),
            sinks={sink.name: sink.figures() for sink in self.sinks},
            process=self._process.sample(),
            identity=self.identity,
            cluster=None if self.cluster is None else self.cluster.figures(now),
        )
