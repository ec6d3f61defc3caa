"""Wires source -> parse -> bus -> analyzer -> sinks and supervises every stage.

Data flows one way. The source hands raw frames to the parser (validation, duplicate filter),
which groups good trades per symbol; the publisher flushes those groups to the bus as encoded
messages: at once at `max_batch` trades, else when the oldest pending trade has waited
`flush_interval` and `min_batch` trades are pending, or has waited `max_wait`. Each time the
receive clock passes a multiple of the emit interval, the publisher also writes a watermark
(clock minus `source.lateness`) into every partition, after the trades received before it: the
analyzer slides quiet symbols on those records alone, so its output is a function of the log.
The receive clock is the wall clock for a live feed and the recorded times for a replay (whose
end writes a final watermark). The analyzer stage consumes deliveries, applies them to the
windows, hands emitted snapshots to the sinks and acknowledges with a checkpoint per partition.
A stats tick once a second turns counters into one immutable `PipelineStats`.

Each stage runs under a supervisor: an exception is counted, logged and the stage restarted with
exponential backoff; nothing hangs silently. `stop()` drains: the source stops, pending trades
are flushed, the bus is closed and consumed to the end, sinks are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from stockup_tui.config import ConfigError, Role, Settings, SimulatorConfig
from stockup_tui.engine.analyzer import Analyzer
from stockup_tui.engine.bus.base import (
    ALL_PARTITIONS,
    Bus,
    HasMetricsTopic,
    HasStatusTopic,
    Message,
    SharesWatchlist,
)
from stockup_tui.engine.bus.factory import create_bus
from stockup_tui.engine.cluster import (
    LOOKBACK_S,
    ClusterView,
    ProcessIdentity,
    encode_status,
    parse_status,
    status_from_stats,
)
from stockup_tui.engine.codec import (
    GROUP_KEY,
    GROUP_MAX_TRADES,
    WATERMARK_KEY,
    CodecError,
    decode_record,
    encode_batch,
    encode_group,
    encode_watermark,
    message_key,
)
from stockup_tui.engine.drops import Drops, describe_losses, is_loss
from stockup_tui.engine.heap import release_free_heap
from stockup_tui.engine.latency import RecentLatency
from stockup_tui.engine.model import SymbolBatch, SymbolSnapshot, Watermark
from stockup_tui.engine.process import ProcessMeter
from stockup_tui.engine.simulator import SimulatorSettings, SimulatorThread
from stockup_tui.engine.sinks.base import Sink, StartedSink
from stockup_tui.engine.sinks.history import PriceHistory
from stockup_tui.engine.sinks.jsonl import JsonlSink
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


_BUS_NAMES = {"kafka": "Kafka", "rabbitmq": "RabbitMQ", "memory": "the in-process bus"}


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
        interval = settings.emit_interval_ms
        self._lateness_ms = round(settings.source.lateness * 1000)
        max_future_ms = round(settings.source.max_future * 1000)
        self.parser = FrameParser(
            self.drops,
            dedup,
            settings.source.max_frame_bytes,
            max_future_ms=max_future_ms,
            # Older than this behind the receive clock, no window still open can hold a trade
            # (the analyzer would call it too_old too; see engine/analyzer/analyzer.py).
            max_age_ms=self._lateness_ms + max(settings.windows_ms) + 2 * interval,
        )
        if self._live_clock:  # a live feed passes the watchlist only (a replay: everything)
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
        self._flush_lock = asyncio.Lock()
        # Batch ids: this process's producer id and sequence.
        self._producer_id = os.urandom(8).hex()
        self._seq = 0
        # The receive clock (epoch seconds) and when the next watermark is due on it.
        self._clock = 0.0
        self._wm_due = 0.0
        self._pending_since = 0.0  # monotonic time the oldest pending trade was parsed
        self._flusher_wake = asyncio.Event()  # min_batch reached: a flush is due sooner
        self.watermarks = 0  # watermark records published
        self.replayed = 0  # trades applied without emitting while recovering
        # Watchlists taken from the control topic (another screen changed it): a screen on this
        # process follows when it grows.
        self.control_version = 0
        self.monitored = 0  # snapshots read from the metrics topic (`--role monitor`)
        # Who this process is in the cluster (a bus with a status topic: Kafka), set at start;
        # a monitor's picture of the whole deployment, from that topic.
        self.identity: ProcessIdentity | None = None
        self.cluster: ClusterView | None = None
        self._stages: dict[str, _Stage] = {}
        self._rates = RateMeter()
        self._process = ProcessMeter()
        self._started_at = time.monotonic()
        self._stopping = False
        self.stop_phase: str | None = None  # what stop() waits for now (see stop_progress)
        self.lost_at_exit: dict[str, int] = {}  # losses counted while stopping, by reason
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
        if settings.bus.kind == "memory" and role != Role.ALL:
            raise ConfigError(
                f"role: {role!r} needs a network bus between processes "
                "(bus.kind = 'kafka' or 'rabbitmq')"
            )
        if role == Role.MONITOR and settings.bus.kind != "kafka":
            raise ConfigError("role: 'monitor' reads the Kafka metrics topic (bus.kind = 'kafka')")
        recorder = None
        if src.record and role.has_feed:
            try:
                recorder = FrameRecorder(
                    src.record,
                    max_frame_bytes=src.max_frame_bytes,
                    max_bytes=src.record_max_bytes,
                    drops=drops,
                )
            except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
                raise ConfigError(f"source.record: cannot write {src.record}: {exc}") from None
        simulator: SimulatorThread | None = None
        source: TradeSource
        if not role.has_feed:
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
                frame_cap_bytes=src.frame_cap_bytes,
                recorder=recorder,
                drops=drops,
            )
        bus = create_bus(settings, drops)
        if settings.sinks.jsonl is not None:
            try:
                sinks = [
                    *sinks,
                    JsonlSink(
                        settings.sinks.jsonl, max_bytes=settings.sinks.jsonl_max_bytes, drops=drops
                    ),
                ]
            except OSError as exc:
                if recorder is not None:
                    recorder.close()
                raise ConfigError(
                    f"sinks.jsonl: cannot write {settings.sinks.jsonl}: {exc}"
                ) from None
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
            if isinstance(sink, StartedSink):
                sink.start()
        self._started_at = time.monotonic()
        role = self.settings.role
        if role.has_feed:
            self._spawn("source", self._run_source, finite=True)
            self._spawn("publisher", self._run_flusher)
        else:
            self._source_done.set()
        if role.analyzes:
            self._spawn("analyzer", self._run_analyzer, finite=True)
        else:
            self._analyzer_done.set()
        if role == Role.MONITOR:
            self._spawn("monitor", self._run_monitor)
        if role.has_feed and isinstance(self.bus, SharesWatchlist):
            self._spawn("control", self._run_control)
        if isinstance(self.bus, HasStatusTopic):
            self.identity = ProcessIdentity(
                role=role,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_ms=int(time.time() * 1000),
                instance=self.bus.instance(),
            )
            self._spawn("status", self._run_status)
            if role == Role.MONITOR:
                kafka = self.settings.kafka
                self.cluster = ClusterView(kafka.topic, kafka.partitions, own_key=self.identity.key)
                self._spawn("cluster", self._run_cluster)
        self._spawn("clock", self._run_clock)
        log.info(
            "pipeline started: source=%s bus=%s symbols=%d windows=%s",
            self.source.stats.kind,
            self.bus.stats.kind,
            len(self.settings.symbols),
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
        self._say_status("stopping")
        self.stop_phase = "source"
        await self.source.stop()
        self._cancel("source")
        self._cancel("publisher")
        self.stop_phase = "bus"
        await self._flush()
        if self._publishes and self._live_clock and not self._source_done.is_set():
            # A live stop closes what the clock has passed; a restart goes on from there.
            await self._advance_clock(time.time())
        self._say_status("stopped", farewell=True)
        await self.bus.close()
        self.stop_phase = "analyzer"
        try:
            await asyncio.wait_for(self._analyzer_done.wait(), timeout)
        except TimeoutError:
            log.error("analyzer did not drain within %.0fs; stopping it", timeout)
            if self.bus.stats.kind == "memory":  # a network bus keeps them for the next run
                self.drops.add("analyzer_undrained", self.bus.unsent_trades())
        self.stop_phase = "sinks"
        for name in list(self._stages):
            self._cancel(name)
        await asyncio.gather(
            *(s.task for s in self._stages.values() if s.task), return_exceptions=True
        )
        if self.settings.role != Role.MONITOR:
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
        self.settings.symbols = new
        if self._live_clock:
            self.parser.set_subscribed(new, time.time())
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

    @property
    def _publishes(self) -> bool:
        return self.settings.role.has_feed

    @property
    def _live_clock(self) -> bool:
        """The receive clock follows the wall clock between frames (not for a replay)."""
        return not isinstance(self.source, ReplaySource)

    async def _run_source(self) -> None:
        await self.source.run(self._on_frame)
        if not self._source_done.is_set():
            if not self._stopping:
                # A source that ended by itself (a replay): the analyzer closes every symbol's
                # last boundary. A stopped one does not: a restart goes on from there.
                await self._flush()
                await self._publish_watermark(self._clock, final=True)
            self._source_done.set()

    async def _on_frame(self, frame: str | bytes, recv_time: float) -> None:
        if recv_time >= self._wm_due:
            await self._advance_clock(recv_time)  # before this frame's trades
        parser = self.parser
        had = parser.pending
        parser.parse(frame, recv_time)
        pending = parser.pending
        if pending == had:
            return
        if not had:
            self._pending_since = time.monotonic()
        bus = self.settings.bus
        if pending >= bus.max_batch:
            await self._flush()
        elif pending >= bus.min_batch:
            if time.monotonic() - self._pending_since >= bus.flush_interval:
                await self._flush()
            elif had < bus.min_batch:
                self._flusher_wake.set()  # due at flush_interval now, not max_wait

    def _flush_due(self) -> float:
        """When the pending trades are due out (monotonic seconds; inf when none are)."""
        pending = self.parser.pending
        if not pending:
            return float("inf")
        bus = self.settings.bus
        if pending >= min(bus.min_batch, bus.max_batch):
            return self._pending_since + bus.flush_interval
        return self._pending_since + bus.longest_wait

    async def _run_flusher(self) -> None:
        """Flushes what waited long enough, and moves the watermark on for a quiet live feed.

        Sleeps until the next thing due, at most `max_wait` (every wake-up costs CPU): trades
        arriving meanwhile are due no sooner, unless they make `min_batch` (`_on_frame` wakes
        it then).
        """
        max_wait = self.settings.bus.longest_wait
        live = self._live_clock
        while True:
            now = time.monotonic()
            if self._flush_due() <= now:
                await self._flush()
            wall = time.time()
            if live and wall >= self._wm_due:
                await self._advance_clock(wall)
            now = time.monotonic()
            sleep = min(max_wait, self._flush_due() - now)
            if live:
                sleep = min(sleep, self._wm_due - time.time())
            wake = self._flusher_wake
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.001, sleep))

    async def _advance_clock(self, clock: float) -> None:
        """The receive clock passed a multiple of the emit interval: the trades received so far
        go out, then a watermark behind the clock by `source.lateness`."""
        if clock < self._clock:
            return  # the wall clock stepped back: the next frames catch up
        await self._flush()
        await self._publish_watermark(clock)
        step = self.settings.emit_interval_ms
        self._wm_due = (int(clock * 1000) // step + 1) * step / 1000

    async def _publish_watermark(self, clock: float, final: bool = False) -> None:
        self._clock = max(self._clock, clock)
        wm = int(self._clock * 1000) - self._lateness_ms
        if wm <= 0:
            return
        payload = encode_watermark(Watermark(wm, final))
        async with self._flush_lock:
            await self.bus.publish([Message(WATERMARK_KEY, payload, 0, ALL_PARTITIONS)])
        self.watermarks += 1

    async def _flush(self) -> None:
        """Moves pending trades to the bus; the lock keeps per-symbol order across flushes."""
        async with self._flush_lock:
            batches = self.parser.take()
            if batches:
                producer = self._producer_id
                seq = self._seq
                route = self.bus.route
                # Per partition: the groups of this flush, the last one still filling.
                groups: dict[int, list[list[SymbolBatch]]] = {}
                filled: dict[int, int] = {}  # trades in each partition's last group
                messages = []
                for b in batches:
                    key = message_key(b)
                    part = route(key)
                    if part is None:  # the bus cannot tell yet: one message per symbol, keyed
                        seq += 1
                        b.bid = (producer, seq)
                        messages.append(Message(key, encode_batch(b), len(b.t)))
                        continue
                    n = len(b.t)
                    mine = groups.setdefault(part, [[]])
                    if mine[-1] and filled[part] + n > GROUP_MAX_TRADES:
                        mine.append([])
                        filled[part] = 0
                    mine[-1].append(b)
                    filled[part] = filled.get(part, 0) + n
                for part, mine in groups.items():  # one message per partition per flush
                    for group in mine:
                        seq += 1
                        trades = sum(len(b.t) for b in group)
                        payload = encode_group(group, producer, seq)
                        messages.append(Message(GROUP_KEY, payload, trades, part))
                self._seq = seq
                await self.bus.publish(messages)

    async def _run_analyzer(self) -> None:
        analyzer = self.analyzer
        bus = self.bus
        drops = self.drops
        latency = self.latency
        live_latency = self._live_clock
        counters = analyzer.counters
        counted = {"too_old": 0, "future_time": 0, "bus_duplicate": 0, "too_many_symbols": 0}
        async for delivery in bus.consume():
            for partition in delivery.revoked:
                analyzer.drop_partition(partition)
            if delivery.revoked:
                log.info("partitions %s revoked", sorted(delivery.revoked))
            for partition, watermark in delivery.starts.items():
                analyzer.start_partition(partition, watermark)
            emitted: list[SymbolSnapshot] = []
            received: dict[float, int] = {}  # receive time -> trades, summed over the delivery
            done: dict[int, int] = {}  # partition -> next offset
            for msg in delivery.messages:
                part = msg.partition
                done[part] = msg.offset + 1
                emit = not msg.replay
                try:
                    record = decode_record(msg.payload)
                except CodecError as exc:
                    if emit:
                        drops.add(f"bus_{exc.reason}", detail=str(exc))
                        await bus.dead_letter(msg, exc.reason)
                    continue
                if type(record) is Watermark:
                    try:
                        snaps = analyzer.watermark(
                            record.wm_ms, part, msg.offset, emit, record.final
                        )
                    except Exception as exc:  # a bug must cost this record, not the stream
                        log.exception("analyzer failed on a watermark of partition %d", part)
                        if emit:
                            drops.add("analyzer_error", detail=f"{type(exc).__name__}: {exc}")
                        continue
                    if snaps:
                        emitted.extend(snaps)
                    continue
                # A group is its symbols' batches, applied in order at the group's offset.
                for batch in record if type(record) is list else (record,):
                    try:
                        snaps = analyzer.trades(batch, part, msg.offset, emit)
                    except Exception as exc:  # a bug must cost this batch (counted), not more
                        log.exception("analyzer failed on a record of partition %d", part)
                        if emit:
                            n = len(batch)
                            drops.add("analyzer_error", n, detail=f"{type(exc).__name__}: {exc}")
                        continue
                    if not emit:
                        self.replayed += len(batch)
                    elif live_latency:
                        for recv, n in batch.recv:
                            received[recv] = received.get(recv, 0) + n
                    if snaps:
                        emitted.extend(snaps)
            if received:
                latency.record_received(received, time.time())
            if emitted:
                self._write_sinks(emitted)
            for reason, before in counted.items():  # the analyzer's drops, logged like all
                now = getattr(counters, reason)
                if now != before:
                    drops.add(reason, now - before)
                    counted[reason] = now
            await bus.ack(delivery, {p: analyzer.checkpoint(p, n) for p, n in done.items()})
        self._analyzer_done.set()

    async def _run_monitor(self) -> None:
        """`--role monitor`: the screen shows what the analyzers commit to the metrics topic,
        read from the longest window back, so that the chart has the prices of a whole window
        at once (kept in a `PriceHistory`: the topic's snapshots carry no intra-window prices)."""
        latest: dict[str, SymbolSnapshot] = dict(self.snapshots.latest)
        longest = max(self.settings.windows_ms)
        history = PriceHistory(longest, self.settings.max_symbols)
        since = int(time.time() * 1000) - longest - 3 * max(self.settings.emit_interval_ms, 5_000)
        points = self.live_points
        assert isinstance(self.bus, HasMetricsTopic)  # a monitor's bus is Kafka (Settings)
        async for snaps in self.bus.watch_metrics(since):
            history.add(snaps)
            changed = set()
            for snap in snaps:
                old = latest.get(snap.symbol)
                if old is None or snap.ts_ms >= old.ts_ms:
                    latest[snap.symbol] = snap
                    changed.add(snap.symbol)
            self.monitored += len(snaps)
            self.snapshots.write(snaps)
            if points:
                for symbol in changed:
                    latest[symbol] = history.with_closes(latest[symbol], points)
            self.snapshots.replace(list(latest.values()))

    async def _run_control(self) -> None:
        """The processes with a feed (`all`, `query`) follow the watchlist changes made on any
        screen of the deployment (a monitor's too), from the control topic; their own come
        back the same and change nothing."""
        assert isinstance(self.bus, SharesWatchlist)  # spawned only then
        async for symbols in self.bus.watch_control():
            if symbols != self.settings.symbols:
                log.info("watchlist from the control topic: %s", ", ".join(symbols))
                self.set_symbols(symbols, share=False)
                self.control_version += 1

    def _say_status(self, state: str, *, farewell: bool = False) -> None:
        """Writes this process's status record (`farewell`: handed to the bus to send after
        its consumer has left, the last thing this process says)."""
        identity = self.identity
        if identity is None:
            return
        interval = self.settings.kafka.status_interval
        status = status_from_stats(
            self._build_stats() if farewell else self.fresh_stats(min(1.0, interval)),
            identity,
            state=state,
            interval=interval,
        )
        record = (identity.key.encode(), encode_status(status))
        assert isinstance(self.bus, HasStatusTopic)  # an identity only then
        if farewell:
            self.bus.farewell = record
        else:
            self.bus.publish_status(*record)

    async def _run_status(self) -> None:
        """A status record every `kafka.status_interval` (the monitor's cluster view)."""
        interval = self.settings.kafka.status_interval
        while True:
            self._say_status("stopping" if self._stopping else "running")
            await asyncio.sleep(interval)

    async def _run_cluster(self) -> None:
        """`--role monitor`: every process's status records, the last minute first."""
        view = self.cluster
        assert view is not None
        started = time.time()
        since = int((started - LOOKBACK_S) * 1000)
        assert isinstance(self.bus, HasStatusTopic)  # a monitor's bus is Kafka (Settings)
        async for batch in self.bus.watch_status(since):
            now = time.time()
            for value, ts_ms in batch:
                try:
                    status = parse_status(value)
                except ValueError as exc:
                    view.invalid += 1
                    self.drops.add("status_invalid", detail=str(exc))
                    continue
                # Written before this monitor started: aged by its timestamp; else by arrival.
                written = ts_ms / 1000
                view.add(status, written if 0 <= written < started else now)

    async def _run_clock(self) -> None:
        """Refreshes live snapshots and the stats, on a fixed timer (the screen's, not the
        analyzer's: nothing here changes what is emitted). It ticks at the live interval, no
        faster (each wake-up costs CPU): 10 Hz under the screen, 2 Hz headless."""
        tick = max(0.05, min(self.live_interval, 0.5))
        trim_every = max(1, round(10 / tick))  # 10 s: see engine/heap.py
        ticks = 0
        while True:
            await asyncio.sleep(tick)
            ticks += 1
            if self.settings.role != Role.MONITOR:
                self._refresh_live()
            self.fresh_stats()  # by the clock, not by ticks: a busy loop makes ticks late
            if ticks % trim_every == 0:
                release_free_heap()

    def _monitored_at(self) -> float | None:
        """When the newest snapshot the monitor shows was emitted (event time, seconds)."""
        newest = max((snap.ts_ms for snap in self.snapshots.latest.values()), default=None)
        return None if newest is None else newest / 1000

    def fresh_stats(self, max_age: float = 1.0) -> PipelineStats:
        """The stats, rebuilt first when older than `max_age` seconds (never stale figures:
        under load the timer that rebuilds them runs late)."""
        if time.time() - self.stats.at >= max_age:
            self.stats = self._build_stats()
            self.latency.rotate()
        return self.stats

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
        if self.settings.role == Role.MONITOR:  # its source is the metrics topic, not a feed
            b = self.bus.stats
            s = replace(
                s,
                kind="metrics topic",
                endpoint=self.settings.kafka.metrics_topic,
                connected=b.connected,
                connections=1,
                frames=self.monitored,
                finished=False,
                last_frame_at=self._monitored_at(),
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
                replayed=self.replayed,
                future_time=self.drops.get("future_time"),
                too_old=self.drops.get("too_old"),
                behind=None if a.watermark_ms is None else max(0.0, now - a.watermark_ms / 1000),
            ),
            drops=self.drops.snapshot(),
            drop_bytes=self.drops.bytes_snapshot(),
            stages=tuple(st.state for st in self._stages.values()),
            sinks={sink.name: sink.figures() for sink in self.sinks},
            process=self._process.sample(),
            identity=self.identity,
            cluster=None if self.cluster is None else self.cluster.figures(now),
        )
