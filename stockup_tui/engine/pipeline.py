"""Wires source -> parse -> bus -> analyzer -> sinks and supervises every stage.

Data flows one way. The source hands raw frames to the parser (validation, duplicate filter),
which groups good trades per symbol; the publisher flushes those groups to the bus as encoded
messages whenever `max_batch` trades are pending or `flush_interval` has passed. The analyzer
stage consumes deliveries, applies them to the windows, hands emitted snapshots to the sinks and
acknowledges. A stats tick once a second turns counters into one immutable `PipelineStats`.

Each stage runs under a supervisor: an exception is counted, logged and the stage restarted with
exponential backoff; nothing hangs silently. `stop()` drains: the source stops, pending trades
are flushed, the bus is closed and consumed to the end, sinks are closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from stockup_tui.config import ConfigError, Settings, SimulatorConfig
from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.analyzer.batch_ids import BatchIds
from stockup_tui.engine.bus.base import Bus, Message
from stockup_tui.engine.bus.factory import create_bus
from stockup_tui.engine.codec import CodecError, decode_batch, encode_batch, message_key
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.heap import release_free_heap
from stockup_tui.engine.latency import RecentLatency
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.process import ProcessMeter
from stockup_tui.engine.simulator import SimulatorSettings, SimulatorThread
from stockup_tui.engine.sinks.base import Sink
from stockup_tui.engine.sinks.snapshots import SnapshotStore
from stockup_tui.engine.sources.base import NullSource, TradeSource
from stockup_tui.engine.sources.dedup import DuplicateFilter
from stockup_tui.engine.sources.finnhub import FinnhubClient
from stockup_tui.engine.sources.parser import FrameParser
from stockup_tui.engine.sources.recording import FrameRecorder, ReplaySource
from stockup_tui.engine.stats import (
    AnalyzerFigures,
    BusFigures,
    PipelineStats,
    RateMeter,
    SourceFigures,
    StageState,
)

log = logging.getLogger(__name__)


def simulator_settings(cfg: SimulatorConfig) -> SimulatorSettings:
    """The simulator's own settings from the `[simulator]` section."""
    return SimulatorSettings(
        port=cfg.port,
        rate=cfg.rate,
        duplicate_fraction=cfg.duplicate_fraction,
        ping_interval=cfg.ping_interval,
        symbol_limit=cfg.symbol_limit,
        drop_every=cfg.drop_every,
        stall_after=cfg.stall_after,
        malformed_rate=cfg.malformed_rate,
        seed=cfg.seed,
    )


@dataclass
class _Stage:
    name: str
    state: StageState
    task: asyncio.Task[None] | None = None


class Pipeline:
    """The whole engine for one process. Build with `Pipeline.from_settings`."""

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
        live_interval: float = 0.1,
        live_points: int = 0,
        live_clock: bool = True,
    ) -> None:
        self.settings = settings
        self.drops = drops or Drops()
        self.source = source
        self.bus = bus
        self.simulator = simulator
        self.recorder = recorder
        dedup = (
            DuplicateFilter(settings.source.dedup_horizon)
            if settings.source.dedup_horizon > 0
            else None
        )
        self.parser = FrameParser(self.drops, dedup, settings.source.max_frame_bytes)
        self.analyzer = Analyzer(settings.windows_ms, settings.emit_interval_ms)
        self.snapshots = SnapshotStore()
        self.sinks: list[Sink] = [self.snapshots, *sinks]
        bus_sink = getattr(bus, "metrics_sink", None)  # Kafka: snapshots to the metrics topic
        if bus_sink is not None:
            self.sinks.append(bus_sink)
        self.latency = RecentLatency()
        self.live_interval = live_interval
        self.live_points = live_points  # price-series points per window in live snapshots
        # Live feeds slide quiet windows on the wall clock; replays only on event time.
        self._live_clock = live_clock
        self._lateness_ms = round(settings.analyzer.lateness * 1000)
        self._flush_lock = asyncio.Lock()
        self._removed: set[str] = set()
        # Batch ids: this process's producer id and sequence; what the analyzer applied.
        self._producer_id = os.urandom(8).hex()
        self._seq = 0
        self.batch_ids = BatchIds()
        self._owner: dict[str, int] = {}  # symbol -> partition it arrives on
        self.replayed = 0  # trades applied without emitting while recovering
        self._replayed_symbols: set[str] = set()  # replayed since the last live batch
        self._stages: dict[str, _Stage] = {}
        self._rates = RateMeter()
        self._process = ProcessMeter()
        self._started_at = time.monotonic()
        self._stopping = False
        self._source_done = asyncio.Event()
        self._analyzer_done = asyncio.Event()
        self.stats: PipelineStats = self._build_stats()

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sinks: Sequence[Sink] = (),
        live_interval: float = 0.1,
        live_points: int = 0,
    ) -> Pipeline:
        """Builds source, bus and sinks from the configuration; raises ConfigError if unusable."""
        drops = Drops()
        src = settings.source
        role = settings.role
        if settings.bus.kind == "memory" and role != "all":
            raise ConfigError(
                f"role: {role!r} needs a network bus between processes "
                "(bus.kind = 'kafka' or 'rabbitmq')"
            )
        if role == "monitor" and settings.bus.kind != "kafka":
            raise ConfigError("role: 'monitor' reads the Kafka metrics topic (bus.kind = 'kafka')")
        recorder = FrameRecorder(src.record) if src.record and role != "analyzer" else None
        simulator: SimulatorThread | None = None
        source: TradeSource
        if role in ("analyzer", "monitor"):
            source = NullSource()
        elif src.kind == "replay":
            if src.replay is None:
                raise ConfigError("source.replay: a file is needed when source.kind = 'replay'")
            if not src.replay.is_file():
                raise ConfigError(f"source.replay: file not found: {src.replay}")
            source = ReplaySource(src.replay, speed=src.replay_speed, drops=drops)
        else:
            if src.kind == "simulator":
                simulator = SimulatorThread(simulator_settings(settings.simulator))
                url, token = "ws://127.0.0.1", None  # the port is known after start()
            else:
                if src.token is None and "finnhub.io" in src.url:
                    raise ConfigError(
                        "source.token: Finnhub needs an API token (set FINNHUB_TOKEN or "
                        "source.token), or use source.kind = 'simulator'"
                    )
                url, token = src.url, src.token.get_secret_value() if src.token else None
            source = FinnhubClient(
                url,
                settings.symbols,
                token=token,
                kind=src.kind,
                watchdog=src.watchdog,
                max_frame_bytes=src.max_frame_bytes,
                recorder=recorder,
            )
        bus = create_bus(settings, drops)
        influx = None
        if settings.sinks.influx.enabled:  # every role and front end gets it from here
            from stockup_tui.engine.sinks.influx import InfluxSink

            influx = InfluxSink(settings.sinks.influx, drops=drops, role=role)
            sinks = [*sinks, influx]
        pipeline = cls(
            settings,
            source,
            bus,
            sinks=sinks,
            drops=drops,
            simulator=simulator,
            recorder=recorder,
            live_interval=live_interval,
            live_points=live_points,
            live_clock=settings.analyzer.clock == "wall" and src.kind != "replay",
        )
        if influx is not None:
            influx.stats_source = lambda: pipeline.stats
        return pipeline

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.simulator is not None:
            url = await asyncio.to_thread(self.simulator.start)
            assert isinstance(self.source, FinnhubClient)
            self.source.set_url(url)
        await self.bus.start()
        for sink in self.sinks:  # sinks with a thread of their own (InfluxDB) start it here
            start = getattr(sink, "start", None)
            if callable(start):
                start()
        self._started_at = time.monotonic()
        role = self.settings.role
        if role in ("all", "query"):
            self._spawn("source", self._run_source, finite=True)
            self._spawn("publisher", self._run_flusher)
        else:
            self._source_done.set()
        if role in ("all", "analyzer"):
            self._spawn("analyzer", self._run_analyzer, finite=True)
        else:
            self._analyzer_done.set()
        if role == "monitor":
            self._spawn("monitor", self._run_monitor)
        if role == "query" and hasattr(self.bus, "watch_control"):
            self._spawn("control", self._run_control)
        self._spawn("clock", self._run_clock)
        log.info(
            "pipeline started: source=%s bus=%s symbols=%d windows=%s",
            self.source.stats.kind,
            self.bus.stats.kind,
            len(self.settings.symbols),
            ",".join(self.settings.windows),
        )

    async def wait_source_done(self) -> None:
        """Returns when a finite source (a replay) has delivered everything."""
        await self._source_done.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """Drains and stops everything; safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        await self.source.stop()
        self._cancel("source")
        self._cancel("publisher")
        await self._flush()
        await self.bus.close()
        try:
            await asyncio.wait_for(self._analyzer_done.wait(), timeout)
        except TimeoutError:
            log.error("analyzer did not drain within %.0fs; stopping it", timeout)
        for name in list(self._stages):
            self._cancel(name)
        await asyncio.gather(
            *(s.task for s in self._stages.values() if s.task), return_exceptions=True
        )
        if self.settings.role != "monitor":
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
        log.info("pipeline stopped")

    def set_symbols(self, symbols: Iterable[str], *, share: bool = True) -> None:
        """Changes the watchlist live: the feed re-subscribes, removed symbols are forgotten.

        Over Kafka, a change made here also goes to the control topic (`share`), from which the
        query process of a split deployment takes it.
        """
        new = list(dict.fromkeys(symbols))
        publish_control = getattr(self.bus, "publish_control", None)
        if share and publish_control is not None and self.settings.role != "query":
            publish_control(new)
        removed = set(self.settings.symbols) - set(new)
        # Trades of a removed symbol still in flight must not bring it back: they are counted
        # as `unsubscribed` and skipped until the symbol is added again.
        self._removed = (self._removed | removed) - set(new)
        for sym in removed:
            self.analyzer.forget(sym)
        self.settings.symbols = new
        self.source.set_symbols(new)

    # -- supervision -----------------------------------------------------------------------

    def _spawn(
        self, name: str, body: Callable[[], Awaitable[None]], *, finite: bool = False
    ) -> None:
        stage = _Stage(name, StageState(name, "starting"))
        self._stages[name] = stage
        stage.task = asyncio.get_running_loop().create_task(
            self._supervise(stage, body, finite), name=f"stage:{name}"
        )

    async def _supervise(
        self, stage: _Stage, body: Callable[[], Awaitable[None]], finite: bool
    ) -> None:
        delay = 0.1
        while True:
            stage.state = replace(stage.state, status="running")
            started = time.monotonic()
            try:
                await body()
            except asyncio.CancelledError:
                stage.state = replace(stage.state, status="stopped")
                raise
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}"
                log.exception("stage %s failed (%s); restarting in %.1fs", stage.name, msg, delay)
                stage.state = replace(
                    stage.state,
                    status="restarting",
                    restarts=stage.state.restarts + 1,
                    last_error=msg[:300],
                )
                if time.monotonic() - started > 30:
                    delay = 0.1  # it ran fine for a while: start the backoff over
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            stage.state = replace(stage.state, status="finished" if finite else "stopped")
            return

    def _cancel(self, name: str) -> None:
        stage = self._stages.get(name)
        if stage and stage.task and not stage.task.done():
            stage.task.cancel()

    # -- stages ----------------------------------------------------------------------------

    async def _run_source(self) -> None:
        await self.source.run(self._on_frame)
        self._source_done.set()

    async def _on_frame(self, frame: str | bytes, recv_time: float) -> None:
        parser = self.parser
        parser.parse(frame, recv_time)
        if parser.pending >= self.settings.bus.max_batch:
            await self._flush()

    async def _run_flusher(self) -> None:
        interval = self.settings.bus.flush_interval
        while True:
            await asyncio.sleep(interval)
            if self.parser.pending:
                await self._flush()

    async def _flush(self) -> None:
        """Moves pending trades to the bus; the lock keeps per-symbol order across flushes."""
        async with self._flush_lock:
            batches = self.parser.take()
            if batches:
                producer = self._producer_id
                seq = self._seq
                messages = []
                for b in batches:
                    seq += 1
                    b.bid = (producer, seq)
                    messages.append(Message(message_key(b), encode_batch(b), len(b.t)))
                self._seq = seq
                await self.bus.publish(messages)

    async def _run_analyzer(self) -> None:
        analyzer = self.analyzer
        bus = self.bus
        drops = self.drops
        latency = self.latency
        batch_ids = self.batch_ids
        owner = self._owner
        async for delivery in bus.consume():
            if delivery.revoked:
                self._forget_partitions(delivery.revoked)
            emitted: list[SymbolSnapshot] = []
            received: dict[float, int] = {}  # receive time -> trades, summed over the delivery
            for msg in delivery.messages:
                try:
                    batch = decode_batch(msg.payload)
                except CodecError as exc:
                    if not msg.replay:
                        drops.add(f"bus_{exc.reason}", detail=str(exc))
                        await bus.dead_letter(msg, exc.reason)
                    continue
                symbol = batch.symbol
                if symbol in self._removed:
                    if not msg.replay:
                        drops.add("unsubscribed", len(batch))
                    continue
                bid = batch.bid
                if bid is not None and not batch_ids.first_time(bid[0], symbol, bid[1]):
                    if not msg.replay:
                        drops.add("bus_duplicate", len(batch))
                    continue
                owner[symbol] = msg.partition
                if msg.replay:  # rebuilding state after a restart: already emitted before
                    try:
                        analyzer.ingest(batch)
                    except Exception:
                        log.exception("analyzer failed on a replayed batch of %s", symbol)
                    analyzer.ingested -= len(batch)
                    self.replayed += len(batch)
                    self._replayed_symbols.add(symbol)
                    continue
                if self._replayed_symbols:
                    emitted.extend(self._end_replay())
                try:
                    emitted.extend(analyzer.ingest(batch))
                except Exception as exc:  # a bug must cost this batch (counted), not the stream
                    log.exception("analyzer failed on a batch of %s", batch.symbol)
                    drops.add("analyzer_error", len(batch), detail=f"{type(exc).__name__}: {exc}")
                    continue
                for recv, n in batch.recv:
                    received[recv] = received.get(recv, 0) + n
            if received:
                latency.record_received(received, time.time())
            if emitted:
                self._write_sinks(emitted)
            await bus.ack(delivery, analyzer.watermark_ms)
        self._analyzer_done.set()

    async def _run_monitor(self) -> None:
        """`--role monitor`: the screen shows what the analyzers commit to the metrics topic."""
        latest: dict[str, SymbolSnapshot] = dict(self.snapshots.latest)
        since = int(time.time() * 1000) - 3 * max(self.settings.emit_interval_ms, 5_000)
        async for snaps in self.bus.watch_metrics(since):  # type: ignore[attr-defined]
            for snap in snaps:
                old = latest.get(snap.symbol)
                if old is None or snap.ts_ms >= old.ts_ms:
                    latest[snap.symbol] = snap
            self.snapshots.write(snaps)
            self.snapshots.replace(list(latest.values()))

    async def _run_control(self) -> None:
        """`--role query`: watchlist changes made on any screen, from the control topic."""
        async for symbols in self.bus.watch_control():  # type: ignore[attr-defined]
            if symbols != self.settings.symbols:
                log.info("watchlist from the control topic: %s", ", ".join(symbols))
                self.set_symbols(symbols, share=False)

    def _forget_partitions(self, partitions: tuple[int, ...]) -> None:
        """Another analyzer owns these partitions now: drop their symbols' windows here."""
        gone = set(partitions)
        for symbol in [s for s, part in self._owner.items() if part in gone]:
            del self._owner[symbol]
            self.analyzer.forget(symbol)
            self.batch_ids.forget(symbol)
        log.info("partitions %s revoked", sorted(gone))

    async def _run_clock(self) -> None:
        """Slides quiet windows, refreshes live snapshots and the stats, on fixed timers."""
        live_every = max(1, round(self.live_interval / 0.05))
        stats_every = 20
        trim_every = 200  # 10 s: see engine/heap.py
        tick = 0
        while True:
            await asyncio.sleep(0.05)
            tick += 1
            if tick % live_every == 0 and self.settings.role != "monitor":
                self._advance_quiet_windows()
                self._refresh_live()
            if tick % stats_every == 0:
                self.stats = self._build_stats()
                self.latency.rotate()
            if tick % trim_every == 0:
                release_free_heap()

    def _end_replay(self) -> list[SymbolSnapshot]:
        """First live batch after a replay. The previous run emitted the replayed symbols'
        boundaries up to its watermark - lateness from complete windows; the rebuilt windows
        only hold the replayed span, so those boundaries are passed over, not emitted again.
        Boundaries of other symbols crossed meanwhile are returned for emission as usual."""
        replayed, self._replayed_symbols = self._replayed_symbols, set()
        wm = self.analyzer.watermark_ms
        if wm is None:
            return []
        crossed = self.analyzer.advance_to(wm - self._lateness_ms)
        return [snap for snap in crossed if snap.symbol not in replayed]

    def _advance_quiet_windows(self) -> None:
        if self._replayed_symbols:  # replaying: windows are partly rebuilt, emit nothing yet
            return
        wm = self.analyzer.watermark_ms
        now_ms = int(time.time() * 1000) if self._live_clock else 0
        clock = max(wm or 0, now_ms)
        if clock:
            emitted = self.analyzer.advance_to(clock - self._lateness_ms)
            if emitted:
                self._write_sinks(emitted)

    def _refresh_live(self) -> None:
        self.snapshots.replace(self.analyzer.live_all(self.live_points))

    def _write_sinks(self, snapshots: list[SymbolSnapshot]) -> None:
        for sink in self.sinks:
            try:
                sink.write(snapshots)
            except Exception as exc:
                self.drops.add(f"sink_error:{sink.name}", len(snapshots), detail=str(exc))

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
                details=tuple(b.details.items()),
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
                replayed=self.replayed,
            ),
            drops={**self.drops.snapshot(), **({"too_old": a.too_old} if a.too_old else {})},
            stages=tuple(st.state for st in self._stages.values()),
            sinks={sink.name: sink.figures() for sink in self.sinks},
            process=self._process.sample(),
        )
