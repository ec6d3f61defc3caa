"""HealthPane: the pure state judgements, the rendered sections and the widget in a tiny app."""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.app import App, ComposeResult
from textual.content import Content
from textual.widgets import Static

from stockup_tui.engine.process import ProcessFigures, ProcessMeter
from stockup_tui.engine.stats import (
    AmqpLink,
    KafkaFigures,
    KafkaGroupFigures,
    KafkaProducerFigures,
    RabbitConsumerFigures,
    RabbitFigures,
    RabbitPublisherFigures,
    SinkFigures,
    StageState,
)
from stockup_tui.widgets.format import DASH, fmt_duration, fmt_figure, fmt_latency, fmt_per_s
from stockup_tui.widgets.health import (
    HealthPane,
    Level,
    bus_detail_rows,
    cpu_level,
    drop_level,
    frame_age_level,
    latency_level,
    link_state,
    overall_level,
    problem,
    queue_level,
    render_analyzer,
    render_bus,
    render_drops,
    render_sinks,
    render_source,
    render_stages,
    source_down_for,
    source_level,
    stage_level,
)
from tests.helpers import make_stats


def style_of(content: Content, text: str) -> str:
    """The styles of the spans that cover the first occurrence of `text` (joined)."""
    start = content.plain.index(text)
    end = start + len(text)
    return " ".join(str(s.style) for s in content.spans if s.start <= start and s.end >= end)


# -- pure judgements -------------------------------------------------------------------------------


def test_link_state_by_connection_phase() -> None:
    assert link_state(True, False, 1, None) == (Level.OK, "connected")
    assert link_state(False, True, 1, None) == (Level.IDLE, "finished")
    assert link_state(False, False, 0, 1.0) == (Level.WARN, "connecting")
    assert link_state(False, False, 2, 1.0) == (Level.WARN, "reconnecting")
    level, label = link_state(False, False, 2, 12.0)
    assert level is Level.BAD and label.startswith("down")
    assert link_state(False, False, 0, 30.0)[0] is Level.BAD  # never got through at all


def test_down_for_uses_last_frame_or_uptime() -> None:
    src = make_stats().source
    assert source_down_for(src, 60) is None
    down = replace(src, connected=False, last_frame_age=7.0)
    assert source_down_for(down, 60) == 7.0
    assert source_down_for(replace(down, last_frame_age=None), 60) == 60
    assert source_down_for(replace(down, finished=True), 60) is None


@pytest.mark.parametrize(
    ("age", "level"),
    [(None, Level.IDLE), (0.5, Level.OK), (2.5, Level.WARN), (9.9, Level.WARN), (11, Level.BAD)],
)
def test_frame_age_level(age: float | None, level: Level) -> None:
    assert frame_age_level(age) is level


def test_frame_age_follows_watchdog_and_finished() -> None:
    assert frame_age_level(6.0, bad_after=5.0) is Level.BAD
    assert frame_age_level(60.0, finished=True) is Level.IDLE


@pytest.mark.parametrize(
    ("depth", "cap", "level"),
    [(0, 100, Level.OK), (50, 100, Level.OK), (51, 100, Level.WARN), (91, 100, Level.BAD)],
)
def test_queue_level(depth: int, cap: int, level: Level) -> None:
    assert queue_level(depth, cap) is level


def test_queue_level_without_capacity() -> None:
    assert queue_level(5, 0) is Level.IDLE


@pytest.mark.parametrize(
    ("p99", "level"),
    [(None, Level.IDLE), (0.05, Level.OK), (0.1, Level.OK), (0.2, Level.WARN), (1.5, Level.BAD)],
)
def test_latency_level(p99: float | None, level: Level) -> None:
    assert latency_level(p99) is level


def test_drop_levels() -> None:
    assert drop_level("duplicate", 1000) is Level.IDLE  # routine
    assert drop_level("malformed_json", 0) is Level.IDLE
    assert drop_level("malformed_json", 3) is Level.WARN
    assert drop_level("too_old", 3) is Level.WARN
    assert drop_level("sink_error:jsonl", 1) is Level.BAD
    assert drop_level("analyzer_error", 1) is Level.BAD
    assert drop_level("bus_full", 1) is Level.BAD


def test_stage_levels() -> None:
    assert stage_level(StageState("s", "running")) is Level.OK
    assert stage_level(StageState("s", "restarting", 1)) is Level.WARN
    assert stage_level(StageState("s", "failed", 3)) is Level.BAD
    assert stage_level(StageState("s", "finished")) is Level.IDLE


def test_overall_level_is_the_worst_section() -> None:
    ok = make_stats()
    assert overall_level(ok) is Level.OK
    assert overall_level(replace(ok, drops={"duplicate": 9})) is Level.OK
    assert overall_level(replace(ok, drops={"malformed_json": 1})) is Level.WARN
    slow = replace(ok.analyzer, latency_p99=2.0)
    assert overall_level(replace(ok, analyzer=slow)) is Level.BAD


def test_stale_last_error_alone_keeps_a_connected_source_green() -> None:
    stats = make_stats()
    stats = replace(stats, source=replace(stats.source, last_error="old hiccup"))
    assert source_level(stats) is Level.OK
    assert "$error" in style_of(render_source(stats), "old hiccup")


def test_formatters() -> None:
    assert fmt_figure(12_345) == "12,345"
    assert fmt_figure(1_234_567) == "1.23M"
    assert fmt_per_s(3.25) == "3.2/s"
    assert fmt_per_s(12_500) == "12.5k/s"
    assert fmt_duration(0.25) == "250ms"
    assert fmt_duration(185) == "3m05s"
    assert fmt_duration(None) == DASH
    assert fmt_latency(0.0123) == "12.3ms"
    assert fmt_latency(1.5) == "1.50s"


# -- rendered sections -----------------------------------------------------------------------------


def test_render_source_colours_follow_the_state() -> None:
    stats = make_stats()
    assert "$success" in style_of(render_source(stats), "connected")
    down = replace(
        stats.source, connected=False, connections=2, last_frame_age=12.0, last_error="x" * 500
    )
    content = render_source(replace(stats, source=down))
    assert "$error" in style_of(content, "down 12.0s")
    assert "…" in content.plain  # long errors are cut
    assert max(len(line) for line in content.plain.splitlines()) <= 170


def test_render_drops_lists_non_zero_reasons_routine_not_red() -> None:
    content = render_drops({"duplicate": 1200, "malformed_json": 34, "late": 0})
    plain = content.plain
    assert "duplicate" in plain and "routine" in plain and "malformed_json" in plain
    assert "late" not in plain
    assert "$error" not in style_of(content, "duplicate")
    assert "$warning" in style_of(content, "malformed_json")
    assert "none" in render_drops({}).plain


def test_render_stages_shows_restarts_and_errors() -> None:
    content = render_stages([StageState("source", "running", 2, "OSError: boom\nmore")])
    assert "$warning" in style_of(content, "restarts 2")
    assert "$success" in style_of(content, "running")
    assert "$error" in style_of(content, "OSError: boom more")


def test_kafka_figures_read_as_text_on_the_screen() -> None:
    kafka = KafkaFigures(
        brokers=("127.0.0.1:9092", "kafka:9093"),
        topic="stockup.trades",
        topic_partitions=3,
        dead_lettered=3,
        producer=KafkaProducerFigures(123_456, 7, 2, 1.25, ack_p50=0.0031, ack_p99=0.012),
        group=KafkaGroupFigures(
            "stockup-analyzer", "analyzer-1", (0, 1), ((0, 12), (1, 1192)), 3001, 0.0025, 1
        ),
    )
    bus = replace(make_stats().bus, kind="kafka", detail=kafka)
    assert bus_detail_rows(bus) == [
        ("brokers", "127.0.0.1:9092,kafka:9093"),
        ("topic", "stockup.trades (3 partitions)"),
        ("produce", "acked 123,456, in flight 7, resent 2, retries 1.2/s"),
        ("ack", "p50 3.1ms  p99 12.0ms"),
        ("group", "stockup-analyzer as analyzer-1: partitions [0, 1]"),
        ("lag", "1,204 (p0 12, p1 1,192)"),
        ("commits", "3,001 (p50 2.5ms, errors 1)"),
        ("dlq", "3"),
    ]
    assert "p50 2.5ms, errors 1" in render_bus(bus).plain
    # A consumer that knows no lag nor latency yet, and no producer (the analyzer role).
    quiet = replace(
        kafka,
        dead_lettered=0,
        producer=None,
        group=KafkaGroupFigures("stockup-analyzer", None, (), (), 0, None, 0),
    )
    assert bus_detail_rows(replace(bus, detail=quiet))[2:] == [
        ("group", "stockup-analyzer: partitions []"),
        ("lag", "-"),
        ("commits", "0 (p50 -, errors 0)"),
    ]
    assert bus_detail_rows(make_stats().bus) == []  # the memory bus has none


def test_rabbitmq_figures_read_as_text_on_the_screen() -> None:
    rabbit = RabbitFigures(
        (AmqpLink("publisher", "down", 12.4, 2), AmqpLink("consumer", "up", None, 0)),
        "stream",
        "stockup.trades",
        RabbitPublisherFigures(1200.4, 1180.0, 0.0012, 0.0034, 1234, 5_432_100, 17, "memory"),
        RabbitConsumerFigures(900.0, 4321, None, 123_456, True, 5000, 4, 1),
    )
    bus = replace(make_stats().bus, kind="rabbitmq", detail=rabbit)
    assert bus_detail_rows(bus) == [
        ("amqp", "pub down 12s (2 rec), con up"),
        ("stream", "stockup.trades"),
        ("publish", "1,200/s, confirmed 1,180/s"),
        ("confirm", "p50 1.2 ms  p99 3.4 ms"),
        ("unconf", "1,234 (5.4 MB)"),
        ("resent", "17"),
        ("flow", "memory"),
        ("consume", "900/s, unacked 4,321"),
        ("offset", "123,456"),
        ("replay", "5,000 messages (no emission)"),
        ("dlq", "4 (1 failed)"),
    ]
    # A classic queue's consumer alone, caught up, nothing dead-lettered.
    classic = replace(
        rabbit,
        links=(AmqpLink("consumer", "connecting", None, 0),),
        queue_type="classic",
        publisher=None,
        consumer=RabbitConsumerFigures(0.0, 0, 2, None, False, None, 0, 0),
    )
    assert bus_detail_rows(replace(bus, detail=classic)) == [
        ("amqp", "con connecting"),
        ("classic", "stockup.trades"),
        ("consume", "0/s, unacked 0"),
        ("readers", "2"),
    ]


def test_sink_rows_show_the_figures_each_sink_has() -> None:
    sinks = {
        "screen": SinkFigures(symbols=2, emitted=10),
        "influx": SinkFigures(
            state="retrying", written=1200, pending=300, retries=4, dropped=0, api="v1"
        ),
    }
    lines = [" ".join(line.split()) for line in render_sinks(sinks).plain.splitlines()]
    assert lines[1:] == [
        "screen symbols 2 emitted 10",
        "influx retrying written 1,200 pending 300 retries 4 dropped 0 api v1",
    ]


def test_a_sink_without_a_server_that_drops_is_named_by_what_it_does() -> None:
    """The Kafka metrics sink has no state: the status bar said `kafka-metrics None`."""
    stats = make_stats(sinks={"kafka-metrics": SinkFigures(written=10, dropped=3)})
    assert problem(stats) == (Level.WARN, "kafka-metrics dropping")


def test_health_pane_shows_process_cpu_and_memory() -> None:
    stats = make_stats()
    assert "cpu" not in render_analyzer(stats.analyzer).plain  # no figures: no row
    proc = ProcessFigures(42.4, 85_300_000, 9, 10, 20, 1.0, 2.0)
    text = render_analyzer(stats.analyzer, proc).plain
    assert "cpu     42%" in text and "rss     85.3 MB" in text
    assert cpu_level(95.0) == Level.WARN and cpu_level(40.0) == Level.IDLE
    sample = ProcessMeter().sample()
    assert sample is not None and sample.rss_bytes > 10_000_000 and sample.threads >= 1


# -- the widget ------------------------------------------------------------------------------------


class HealthApp(App[None]):
    def compose(self) -> ComposeResult:
        yield HealthPane(id="health")


def shown(app: App[None], key: str) -> Content:
    static = app.query_one(f"#health-{key}", Static)
    visual = static.visual
    assert isinstance(visual, Content)
    return visual


async def test_pane_updates_colours_drops_and_stages() -> None:
    app = HealthApp()
    async with app.run_test(size=(50, 60)) as pilot:
        pane = app.query_one(HealthPane)
        pane.update_health(make_stats())
        await pilot.pause()
        assert "$success" in style_of(shown(app, "source"), "connected")
        assert "$success" in style_of(shown(app, "bus"), "3/1,000")
        assert pane.level is Level.OK and not pane.has_class("-bad")

        stats = make_stats()
        bad = replace(
            stats,
            source=replace(stats.source, connected=False, connections=3, last_frame_age=30.0),
            bus=replace(stats.bus, queue_depth=950),
            analyzer=replace(stats.analyzer, latency_p99=0.25),
            drops={"duplicate": 7, "malformed_json": 2},
            stages=(StageState("source", "restarting", 4, "ConnectionError: refused"),),
        )
        pane.update_health(bad)
        await pilot.pause()
        assert "$error" in style_of(shown(app, "source"), "down 30.0s")
        assert "$error" in style_of(shown(app, "bus"), "950/1,000")
        assert "$warning" in style_of(shown(app, "analyzer"), "250ms")
        drops = shown(app, "drops")
        assert "malformed_json" in drops.plain and "duplicate" in drops.plain
        stages = shown(app, "stages")
        assert "restarts 4" in stages.plain and "ConnectionError: refused" in stages.plain
        assert app.query_one("#health-stages", Static).tooltip == (
            "source: ConnectionError: refused"
        )
        assert pane.level is Level.BAD and pane.has_class("-bad")


async def test_pane_skips_unchanged_sections() -> None:
    app = HealthApp()
    async with app.run_test(size=(50, 60)) as pilot:
        pane = app.query_one(HealthPane)
        pane.update_health(make_stats())
        await pilot.pause()
        calls: list[str] = []
        for static in app.query(".health-section").results(Static):
            original = static.update

            def spy(
                content: object = "", *, layout: bool = True, _o=original, _id=static.id
            ) -> None:
                calls.append(str(_id))
                _o(content, layout=layout)

            static.update = spy  # type: ignore[method-assign]
        stats = make_stats()
        pane.update_health(replace(stats, bus=replace(stats.bus, queue_depth=700)))
        await pilot.pause()
        assert calls == ["health-bus"]


async def test_pane_repaints_a_colour_only_change() -> None:
    """Content `==` compares text only; a new colour with the same text must still repaint."""
    app = HealthApp()
    async with app.run_test(size=(50, 60)) as pilot:
        pane = app.query_one(HealthPane)
        stats = make_stats()
        stats = replace(stats, source=replace(stats.source, last_frame_age=5.0))
        pane.update_health(stats)
        await pilot.pause()
        assert "$warning" in style_of(shown(app, "source"), "5.0s ago")
        pane.watchdog = 3.0  # same figures, stricter threshold: only the colour changes
        pane.update_health(stats)
        await pilot.pause()
        assert "$error" in style_of(shown(app, "source"), "5.0s ago")
