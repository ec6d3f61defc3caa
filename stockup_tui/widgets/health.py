"""The pipeline health pane: is the feed alive, is anything backing up, is anything being lost?

It sits beside the quotes table (~40-60 columns), so every section is a few dense label/value
rows whose values are coloured green / amber / red from the theme (`$success`, `$warning`,
`$error`). The judgement is made by small pure functions (`*_level`, `link_state`, `render_*`)
so the thresholds can be unit tested without a screen; the widget only caches and swaps text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from stockup_tui.engine.drops import ROUTINE_REASONS
from stockup_tui.engine.process import ProcessFigures
from stockup_tui.engine.stats import (
    AmqpLink,
    AnalyzerFigures,
    BusFigures,
    KafkaFigures,
    PipelineStats,
    RabbitFigures,
    SinkFigures,
    SourceFigures,
    StageState,
)
from stockup_tui.figures import fmt_bytes, fmt_ms, fmt_queue
from stockup_tui.widgets.cluster import (
    cluster_level,
    cluster_problems,
    render_cluster,
    render_partitions,
)
from stockup_tui.widgets.format import (
    DASH,
    fmt_duration,
    fmt_figure,
    fmt_latency,
    fmt_per_s,
    fmt_value,
)
from stockup_tui.widgets.levels import (
    LABEL_W,
    Level,
    header,
    one_line,
    row,
    section,
    styled,
    worst,
)

# Thresholds (seconds or fractions). FRAME_AGE_BAD matches the source watchdog default: past it
# the client itself declares the connection dead.
FRAME_AGE_WARN = 2.0
FRAME_AGE_BAD = 10.0
DOWN_GRACE = 5.0  # a reconnect shorter than this is routine (amber), longer is an outage (red)
QUEUE_WARN = 0.5
QUEUE_BAD = 0.9
LATENCY_WARN = 0.1
LATENCY_BAD = 1.0
CPU_WARN = 80.0  # percent of one core

# Drop reasons that mean our own code or a service failed (not merely bad input from the feed).
_FAILURE_REASONS = frozenset({"analyzer_error", "server_error"})
_FAILURE_PREFIXES = ("sink_error:", "bus_")


# -- pure judgements -----------------------------------------------------------------------------


def source_down_for(source: SourceFigures, uptime: float) -> float | None:
    """How long the feed has been without a connection, or None while connected/finished.

    Measured from the last frame, as the engine measures gaps; before any frame ever arrived it
    is the pipeline's uptime (still trying to make the first connection).
    """
    if source.connected or source.finished:
        return None
    return source.last_frame_age if source.last_frame_age is not None else uptime


def link_state(
    connected: bool,
    finished: bool,
    connections: int,
    down_for: float | None,
    grace: float = DOWN_GRACE,
) -> tuple[Level, str]:
    """The source link's level and its one-word label (plus the outage length when red)."""
    if connected:
        return Level.OK, "connected"
    if finished:
        return Level.IDLE, "finished"
    word = "connecting" if connections == 0 else "reconnecting"
    if down_for is not None and down_for > grace:
        return Level.BAD, f"{'down' if connections else word} {fmt_duration(down_for)}"
    return Level.WARN, word


def frame_age_level(
    age: float | None, finished: bool = False, bad_after: float = FRAME_AGE_BAD
) -> Level:
    """Amber once frames stop for a couple of seconds, red near the watchdog."""
    if age is None or finished:
        return Level.IDLE
    if age > bad_after:
        return Level.BAD
    if age > FRAME_AGE_WARN:
        return Level.WARN
    return Level.OK


def bus_link_level(connected: bool) -> Level:
    return Level.OK if connected else Level.BAD


def queue_level(depth: int, capacity: int) -> Level:
    """Amber past half full (consumers falling behind), red near full (back-pressure)."""
    if capacity <= 0:
        return Level.IDLE
    fill = depth / capacity
    if fill > QUEUE_BAD:
        return Level.BAD
    if fill > QUEUE_WARN:
        return Level.WARN
    return Level.OK


def latency_level(p99: float | None) -> Level:
    """Trade -> metric latency: amber past 100 ms, red past a second."""
    if p99 is None:
        return Level.IDLE
    if p99 > LATENCY_BAD:
        return Level.BAD
    if p99 > LATENCY_WARN:
        return Level.WARN
    return Level.OK


def count_level(n: int) -> Level:
    """For counters that should stay zero (publish errors, restarts)."""
    return Level.WARN if n > 0 else Level.IDLE


def drop_level(reason: str, count: int) -> Level:
    """Duplicates are routine (the feed resends); failures of ours are red, bad input amber."""
    if count <= 0 or reason in ROUTINE_REASONS:
        return Level.IDLE
    if reason in _FAILURE_REASONS or reason.startswith(_FAILURE_PREFIXES):
        return Level.BAD
    return Level.WARN


def stage_level(stage: StageState) -> Level:
    """Status of a supervised stage: failed is red, restarting amber, running green."""
    match stage.status:
        case "failed":
            return Level.BAD
        case "restarting":
            return Level.WARN
        case "running":
            return Level.OK
        case _:
            return Level.IDLE


def source_level(stats: PipelineStats, watchdog: float = FRAME_AGE_BAD) -> Level:
    """The source section's overall state; a stale `last_error` alone does not make it red."""
    src = stats.source
    link, _ = link_state(
        src.connected, src.finished, src.connections, source_down_for(src, stats.uptime)
    )
    age = frame_age_level(src.last_frame_age, src.finished, watchdog) if src.connected else link
    return worst((link, age))


def bus_level(bus: BusFigures) -> Level:
    return worst(
        (
            bus_link_level(bus.connected),
            queue_level(bus.queue_depth, bus.queue_capacity),
            count_level(bus.publish_errors),
        )
    )


# A sink's `state` figure -> level (the InfluxDB sink's states; an unknown one is neutral).
_SINK_STATES = {
    "connected": Level.OK,
    "starting": Level.IDLE,
    "closed": Level.IDLE,
    "retrying": Level.WARN,
    "down": Level.BAD,
    "error": Level.BAD,
    "failed": Level.BAD,
}


def sink_level(figures: SinkFigures) -> Level:
    """A sink whose server is away is red (retrying: amber); one dropping points is amber."""
    state = _SINK_STATES.get(figures.state or "", Level.IDLE)
    return worst((state, count_level(figures.dropped or 0)))


def sinks_level(sinks: Mapping[str, SinkFigures]) -> Level:
    return worst(sink_level(figures) for figures in sinks.values())


def analyzer_level(analyzer: AnalyzerFigures) -> Level:
    return worst((Level.OK, latency_level(analyzer.latency_p99)))


def drops_level(drops: Mapping[str, int]) -> Level:
    return worst(drop_level(reason, n) for reason, n in drops.items())


def stages_level(stages: Iterable[StageState]) -> Level:
    return worst(max(stage_level(s), count_level(s.restarts)) for s in stages)


def overall_level(stats: PipelineStats, watchdog: float = FRAME_AGE_BAD) -> Level:
    """The worst section: what a single status light for the whole pipeline would show."""
    return worst(
        (
            source_level(stats, watchdog),
            bus_level(stats.bus),
            analyzer_level(stats.analyzer),
            sinks_level(stats.sinks),
            drops_level(stats.drops),
            stages_level(stats.stages),
        )
    )


def problem(stats: PipelineStats, watchdog: float = FRAME_AGE_BAD) -> tuple[Level, str] | None:
    """The worst amber or red part of the pipeline in a few words, for the status bar: the
    Pipeline pane may be hidden (a narrow terminal) or scrolled, a problem must still show."""
    src, bus = stats.source, stats.bus
    found: list[tuple[Level, str]] = []
    level = source_level(stats, watchdog)
    if level >= Level.WARN:
        why = src.last_error or ("no frame for " + fmt_duration(src.last_frame_age or 0))
        found.append((level, f"source {src.kind}: {why}"))
    level = bus_level(bus)
    if level >= Level.WARN:
        why = "down" if not bus.connected else "queue filling"
        found.append(
            (level, f"bus {bus.kind} {why}" + (f": {bus.last_error}" if bus.last_error else ""))
        )
    for name, figures in stats.sinks.items():
        level = sink_level(figures)
        if level >= Level.WARN:
            error = figures.error
            state = figures.state or "dropping"  # a sink without a server: only drops warn
            found.append((level, f"{name} {state}" + (f": {error}" if error else "")))
    for stage in stats.stages:
        level = stage_level(stage)
        if level >= Level.WARN:
            found.append((level, f"stage {stage.name} {stage.status}"))
    if stats.cluster is not None:
        found.extend(cluster_problems(stats.cluster))
    if not found:
        return None
    worst_level = max(level for level, _ in found)
    text = next(text for level, text in found if level == worst_level)
    more = len(found) - 1
    return worst_level, one_line(text) + (f" (+{more} more: P)" if more else "")


# -- formatting ----------------------------------------------------------------------------------


# -- rendering (pure: stats in, Content out) ------------------------------------------------------


def render_source(stats: PipelineStats, watchdog: float = FRAME_AGE_BAD) -> Content:
    src = stats.source
    link, label = link_state(
        src.connected, src.finished, src.connections, source_down_for(src, stats.uptime)
    )
    age_level = frame_age_level(src.last_frame_age, src.finished, watchdog)
    age_text = DASH if src.last_frame_age is None else f"{fmt_duration(src.last_frame_age)} ago"
    rows = [
        row(("state", label, link)),
        row(("url", src.endpoint or DASH, Level.IDLE)),
        row(
            ("conns", fmt_figure(src.connections), Level.IDLE),
            ("reconn", fmt_figure(src.reconnects), Level.IDLE),
        ),
        row(
            ("gap", fmt_duration(src.last_gap), Level.IDLE),
            ("max gap", fmt_duration(src.max_gap) if src.max_gap else DASH, Level.IDLE),
        ),
        row(
            ("frames", fmt_per_s(src.frames_per_s), Level.IDLE),
            ("trades", fmt_per_s(src.trades_per_s), Level.IDLE),
        ),
        row(
            ("last fr", age_text, age_level),
            ("symbols", fmt_figure(len(src.subscribed)), Level.IDLE),
        ),
    ]
    if src.last_error:
        rows.append(row(("error", one_line(src.last_error), Level.BAD)))
    return section(header("Source", source_level(stats, watchdog), src.kind), rows)


def kafka_rows(k: KafkaFigures) -> list[tuple[str, str]]:
    rows = [
        ("brokers", ",".join(k.brokers)),
        ("topic", f"{k.topic} ({k.topic_partitions} partitions)"),
    ]
    if (p := k.producer) is not None:
        rows.append(
            (
                "produce",
                f"acked {p.acked:,}, in flight {p.in_flight:,}, resent {p.resent:,}, "
                f"retries {p.retries_per_s:.1f}/s",
            )
        )
        rows.append(("ack", f"p50 {fmt_ms(p.ack_p50)}  p99 {fmt_ms(p.ack_p99)}"))
    if (g := k.group) is not None:
        member = f" as {g.member}" if g.member else ""
        rows.append(("group", f"{g.group_id}{member}: partitions {list(g.assignment)}"))
        per = ", ".join(f"p{part} {n:,}" for part, n in g.lag)
        rows.append(("lag", f"{g.lag_total:,} ({per})" if g.lag else "-"))
        rows.append(
            ("commits", f"{g.commits:,} (p50 {fmt_ms(g.commit_p50)}, errors {g.commit_errors})")
        )
    if k.dead_lettered:
        rows.append(("dlq", f"{k.dead_lettered:,}"))
    return rows


def _link_text(link: AmqpLink) -> str:
    """`pub up`, `con down 12s (2 rec)`."""
    state = link.state
    if link.down_for is not None:
        state += f" {link.down_for:.0f}s"
    return f"{link.name[:3]} {state}" + (f" ({link.reconnects} rec)" if link.reconnects else "")


def rabbit_rows(r: RabbitFigures) -> list[tuple[str, str]]:
    rows = [("amqp", ", ".join(_link_text(link) for link in r.links)), (r.queue_type, r.queue)]
    if (p := r.publisher) is not None:
        rows.append(("publish", f"{p.publish_per_s:,.0f}/s, confirmed {p.confirm_per_s:,.0f}/s"))
        if p.confirm_p50 is not None and p.confirm_p99 is not None:
            rows.append(
                ("confirm", f"p50 {fmt_ms(p.confirm_p50, ' ')}  p99 {fmt_ms(p.confirm_p99, ' ')}")
            )
        rows.append(("unconf", f"{p.unconfirmed:,} ({p.buffered_bytes / 1e6:,.1f} MB)"))
        if p.republished:
            rows.append(("resent", f"{p.republished:,}"))
        if p.blocked_reason:
            rows.append(("flow", p.blocked_reason))
    if (c := r.consumer) is not None:
        rows.append(("consume", f"{c.consume_per_s:,.0f}/s, unacked {c.unacked:,}"))
        if c.queue_consumers is not None:
            rows.append(("readers", str(c.queue_consumers)))
        if c.acked_offset is not None:
            rows.append(("offset", f"{c.acked_offset:,}"))
        if c.replaying:
            rows.append(("replay", f"{c.replayed or 0:,} messages (no emission)"))
        if c.dead_lettered or c.dead_letter_errors:
            failed = f" ({c.dead_letter_errors} failed)" if c.dead_letter_errors else ""
            rows.append(("dlq", f"{c.dead_lettered:,}{failed}"))
    return rows


def bus_detail_rows(bus: BusFigures) -> list[tuple[str, str]]:
    """The (label, text) rows of what only this kind of bus reports, below the common ones."""
    match bus.detail:
        case KafkaFigures() as k:
            return kafka_rows(k)
        case RabbitFigures() as r:
            return rabbit_rows(r)
        case _:
            return []


def render_bus(bus: BusFigures) -> Content:
    queue = fmt_queue(bus.queue_depth, bus.queue_capacity, bus.queue_unit)
    rows = [
        row(
            (
                "link",
                "connected" if bus.connected else "disconnected",
                bus_link_level(bus.connected),
            )
        ),
        row(
            ("pub", fmt_per_s(bus.published_per_s), Level.IDLE),
            ("cons", fmt_per_s(bus.consumed_per_s), Level.IDLE),
        ),
        row(("queue", queue, queue_level(bus.queue_depth, bus.queue_capacity))),
        row(("backlog", DASH if bus.backlog is None else fmt_figure(bus.backlog), Level.IDLE)),
        row(("errors", fmt_figure(bus.publish_errors), count_level(bus.publish_errors))),
    ]
    rows.extend(row((label, value, Level.IDLE)) for label, value in bus_detail_rows(bus))
    if bus.last_error:
        rows.append(row(("error", one_line(bus.last_error), Level.BAD)))
    return section(header("Bus", bus_level(bus), bus.kind), rows)


def cpu_level(percent: float) -> Level:
    """The process's CPU, 100% = one core: amber when it nears a full core (the event loop's
    ceiling), which is where latency starts to grow."""
    return Level.WARN if percent > CPU_WARN else Level.IDLE


def render_analyzer(an: AnalyzerFigures, process: ProcessFigures | None = None) -> Content:
    lat = latency_level(an.latency_p99)
    rows = [
        row(
            ("trades", fmt_per_s(an.trades_per_s), Level.IDLE),
            ("symbols", fmt_figure(an.symbols), Level.IDLE),
        ),
        row(
            ("late", fmt_figure(an.late), Level.IDLE),
            ("snaps", fmt_figure(an.snapshots), Level.IDLE),
        ),
        row(
            ("future", fmt_figure(an.future_time), count_level(an.future_time)),
            ("too old", fmt_figure(an.too_old), count_level(an.too_old)),
        ),
        row(
            ("behind", DASH if an.behind is None else fmt_duration(an.behind), Level.IDLE),
            ("replay", fmt_figure(an.replayed), Level.IDLE),
        ),
        row(
            ("lat p50", fmt_latency(an.latency_p50), Level.IDLE),
            ("lat p99", fmt_latency(an.latency_p99), lat),
        ),
    ]
    if process is not None:  # the whole process: source, bus client, analyzer and sinks
        rows.append(
            row(
                ("cpu", f"{process.cpu_percent:.0f}%", cpu_level(process.cpu_percent)),
                ("rss", fmt_bytes(process.rss_bytes), Level.IDLE),
            )
        )
    return section(header("Analyzer", analyzer_level(an)), rows)


def sink_pairs(f: SinkFigures) -> str:
    """A sink's figures on its row, those it has, in their declared order."""
    shown = (
        ("symbols", f.symbols),
        ("emitted", f.emitted),
        ("path", f.path),
        ("written", f.written),
        ("pending", f.pending),
        ("retries", f.retries),
        ("dropped", f.dropped),
        ("api", f.api),
    )
    return "  ".join(f"{label} {fmt_value(v)}" for label, v in shown if v is not None)


def render_sinks(sinks: Mapping[str, SinkFigures]) -> Content:
    rows: list[Content] = []
    for name, figures in sinks.items():
        level = sink_level(figures)
        state = figures.state or ""
        rows.append(
            Content.assemble(
                (name.ljust(LABEL_W - 1), "bold"),
                " ",
                styled(state, level),
                "  ",
                sink_pairs(figures) or DASH,
            )
        )
        if figures.error and level >= Level.WARN:
            rows.append(styled(one_line(figures.error), level))
    if not rows:
        rows.append(Content.styled("none", "dim"))
    return section(header("Sinks", sinks_level(sinks)), rows)


def render_drops(drops: Mapping[str, int], sizes: Mapping[str, int] | None = None) -> Content:
    """Drops by reason, the most first; `sizes` adds the bytes of those that have one."""
    sizes = sizes or {}
    shown = sorted(((r, n) for r, n in drops.items() if n > 0), key=lambda rn: (-rn[1], rn[0]))
    total = sum(n for _, n in shown)
    rows: list[Content] = []
    for reason, n in shown:
        level = drop_level(reason, n)
        parts: list[Content | tuple[str, str] | str] = [
            styled(reason.ljust(18), level),
            " ",
            styled(fmt_figure(n).rjust(8), level),
        ]
        if sizes.get(reason):
            parts += ["  ", (fmt_bytes(sizes[reason]), "dim")]
        if reason in ROUTINE_REASONS:
            parts += ["  ", ("routine", "dim")]
        rows.append(Content.assemble(*parts))
    if not rows:
        rows.append(styled("none", Level.OK))
    extra = f"total {fmt_figure(total)}" if total else ""
    return section(header("Drops", drops_level(drops), extra), rows)


def render_stages(stages: Iterable[StageState]) -> Content:
    stages = tuple(stages)
    rows: list[Content] = []
    for st in stages:
        parts: list[Content | tuple[str, str] | str] = [
            (st.name.ljust(10), "bold"),
            " ",
            styled(st.status.ljust(10), stage_level(st)),
        ]
        if st.restarts:
            parts += [" ", styled(f"restarts {st.restarts}", count_level(st.restarts))]
        rows.append(Content.assemble(*parts))
        if st.last_error:
            rows.append(Content.assemble("  ", styled(one_line(st.last_error), Level.BAD)))
    if not rows:
        rows.append(Content.styled("none yet", "dim"))
    return section(header("Stages", stages_level(stages)), rows)


def _errors_tooltip(*errors: tuple[str, str | None]) -> str | None:
    """Full error texts, which the rows cut to one line."""
    lines = [f"{what}: {err}" for what, err in errors if err]
    return "\n".join(lines) if lines else None


# -- widget --------------------------------------------------------------------------------------

SECTIONS = ("cluster", "partitions", "source", "bus", "analyzer", "sinks", "drops", "stages")
#: A monitor's screen shows the cluster instead of its own (empty) analyzer; others no cluster.
MONITOR_ONLY = frozenset({"cluster", "partitions"})


class HealthPane(VerticalScroll):
    """Live pipeline health; feed it with `update_health(stats)` a few times a second.

    Each section is its own `Static`, re-rendered only when its text or colours changed, so a
    steady pipeline costs almost nothing to display. The pane gets the class `-warn` or `-bad`
    from the worst section, so app CSS can tint its border.
    """

    DEFAULT_CSS = """
    HealthPane {
        width: 1fr;
        min-width: 40;
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    HealthPane > .health-section {
        width: 1fr;
        height: auto;
        margin-bottom: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(
        self,
        *,
        watchdog: float = FRAME_AGE_BAD,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """`watchdog`: the source's watchdog (s), past which the last frame's age is red."""
        super().__init__(name=name, id=id, classes=classes)
        self.watchdog = watchdog
        self.level = Level.IDLE
        self.last_stats: PipelineStats | None = None
        self._statics: dict[str, Static] = {}
        self._shown: dict[str, Content] = {}
        self._tips: dict[str, str | None] = {}

    def compose(self) -> ComposeResult:
        for key in SECTIONS:
            text = "waiting for the pipeline…" if key == "source" else ""
            static = Static(
                Content.styled(text, "dim"), id=f"health-{key}", classes="health-section"
            )
            static.display = key not in MONITOR_ONLY
            yield static

    def on_mount(self) -> None:
        self._statics = {key: self.query_one(f"#health-{key}", Static) for key in SECTIONS}
        if self.last_stats is not None:  # fed before it was mounted
            self.update_health(self.last_stats)

    def update_health(self, stats: PipelineStats) -> None:
        """Re-renders the sections whose content changed since the last call."""
        self.last_stats = stats
        cluster = stats.cluster
        rendered = {
            "source": render_source(stats, self.watchdog),
            "bus": render_bus(stats.bus),
            "analyzer": render_analyzer(stats.analyzer, stats.process),
            "sinks": render_sinks(stats.sinks),
            "drops": render_drops(stats.drops, stats.drop_bytes),
            "stages": render_stages(stats.stages),
        }
        if cluster is not None:
            rendered["cluster"] = render_cluster(cluster)
            rendered["partitions"] = render_partitions(cluster)
            del rendered["analyzer"]
        tips = {
            "source": _errors_tooltip(("source", stats.source.last_error)),
            "bus": _errors_tooltip(("bus", stats.bus.last_error)),
            "stages": _errors_tooltip(*((s.name, s.last_error) for s in stats.stages)),
        }
        for key, pane_static in self._statics.items():
            pane_static.display = key in rendered
        for key, content in rendered.items():
            static = self._statics.get(key)
            if static is None:  # not mounted yet: the next call will paint
                break
            before = self._shown.get(key)
            if before is None or not before.is_same(content):  # `==` ignores the colours
                self._shown[key] = content
                # Sections are height: auto; lay out again only when the line count changed.
                relayout = before is None or before.plain.count("\n") != content.plain.count("\n")
                static.update(content, layout=relayout)
            tip = tips.get(key)
            if key in tips and self._tips.get(key) != tip:
                self._tips[key] = tip
                static.tooltip = tip
        self.level = overall_level(stats, self.watchdog)
        if cluster is not None:
            self.level = max(self.level, cluster_level(cluster))
        self.set_class(self.level == Level.WARN, "-warn")
        self.set_class(self.level == Level.BAD, "-bad")
