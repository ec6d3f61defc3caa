"""Builds a `Pipeline` from the settings: the source, the bus and the sinks of every role and
front end (screen, headless, benchmarks), in one place.

`Settings` has already checked the rules that span sections (a role's bus, a replay's file,
Finnhub's token); what is left here can only fail when it is tried: a file that cannot be
written, a TLS file that cannot be loaded. Those raise `ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stockup_tui.config import ConfigError, Settings, SimulatorConfig
from stockup_tui.engine.bus.factory import create_bus
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.pipeline import Pipeline
from stockup_tui.engine.simulator import SimulatorSettings, SimulatorThread
from stockup_tui.engine.sinks.base import Sink
from stockup_tui.engine.sinks.jsonl import JsonlSink
from stockup_tui.engine.sources.base import NullSource, TradeSource
from stockup_tui.engine.sources.finnhub import FinnhubClient
from stockup_tui.engine.sources.recording import FrameRecorder, ReplaySource
from stockup_tui.engine.stats import PipelineStats


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


def build_pipeline(
    settings: Settings,
    *,
    sinks: Sequence[Sink] = (),
    live_interval: float | None = 0.1,
    live_points: int = 0,
) -> Pipeline:
    """The engine for one process; `sinks` are the front end's own (the configured JSONL and
    InfluxDB sinks are added here, for every role and front end)."""
    drops = Drops()
    recorder = _recorder(settings, drops)
    simulator: SimulatorThread | None = None
    pipeline: Pipeline | None = None

    def stats() -> PipelineStats | None:  # for InfluxDB's ops points, once the pipeline is
        return None if pipeline is None else pipeline.stats

    try:
        source, simulator = _source(settings, recorder, drops)
        bus = create_bus(settings, drops)
        sinks = [*sinks, *_configured_sinks(settings, drops, stats)]
    except BaseException:
        if recorder is not None:
            recorder.close()
        raise
    pipeline = Pipeline(
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
    return pipeline


def _recorder(settings: Settings, drops: Drops) -> FrameRecorder | None:
    src = settings.source
    if not (src.record and settings.role.has_feed):
        return None
    try:
        return FrameRecorder(
            src.record,
            max_frame_bytes=src.max_frame_bytes,
            max_bytes=src.record_max_bytes,
            drops=drops,
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ConfigError(f"source.record: cannot write {src.record}: {exc}") from None


def _source(
    settings: Settings, recorder: FrameRecorder | None, drops: Drops
) -> tuple[TradeSource, SimulatorThread | None]:
    src = settings.source
    if not settings.role.has_feed:
        return NullSource(), None
    if src.kind == "replay":
        assert src.replay is not None  # Settings checked it (a rule across settings)
        return ReplaySource(src.replay, speed=src.replay_speed, drops=drops), None
    simulator = None
    if src.kind == "simulator":
        simulator = SimulatorThread(simulator_settings(settings.simulator))
        url, token = "ws://127.0.0.1", None  # the port is known after start()
    else:
        url, token = src.url, src.token.get_secret_value() if src.token else None
    client = FinnhubClient(
        url,
        settings.symbols,
        token=token,
        kind=src.kind,
        watchdog=src.watchdog,
        frame_cap_bytes=src.frame_cap_bytes,
        recorder=recorder,
        drops=drops,
    )
    return client, simulator


def _configured_sinks(
    settings: Settings, drops: Drops, stats: Callable[[], PipelineStats | None]
) -> list[Sink]:
    out: list[Sink] = []
    cfg = settings.sinks
    if cfg.jsonl is not None:
        try:
            out.append(JsonlSink(cfg.jsonl, max_bytes=cfg.jsonl_max_bytes, drops=drops))
        except OSError as exc:
            raise ConfigError(f"sinks.jsonl: cannot write {cfg.jsonl}: {exc}") from None
    if cfg.influx.enabled:
        from stockup_tui.engine.sinks.influx.sink import InfluxSink  # its client loads slowly

        out.append(InfluxSink(cfg.influx, drops=drops, role=settings.role, stats_source=stats))
    return out
