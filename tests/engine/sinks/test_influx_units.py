"""The InfluxDB sink's own logic, no server needed: line protocol (checked against
influxdb-client's `Point`), version detection, the bounded buffer and its drops, secrets."""

from __future__ import annotations

import math
import socket
import time
from dataclasses import fields, is_dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockup_tui.config import InfluxConfig
from stockup_tui.engine.cluster import ProcessIdentity
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot, WindowMetrics, window_label
from stockup_tui.engine.sinks.influx.http import (
    Redactor,
    ServerInfo,
    choose_api,
    influxql_duration,
    parse_version,
    safe_url,
    split_bucket,
)
from stockup_tui.engine.sinks.influx.lines import (
    WindowLines,
    bus_fields,
    ops_points,
    point_lines,
    window_point,
)
from stockup_tui.engine.sinks.influx.sink import InfluxSink
from stockup_tui.engine.stats import (
    AmqpLink,
    BusDetail,
    KafkaFigures,
    KafkaGroupFigures,
    KafkaProducerFigures,
    PartitionLag,
    PipelineStats,
    RabbitConsumerFigures,
    RabbitFigures,
    RabbitPublisherFigures,
    SinkFigures,
)
from tests.helpers import (
    REPO,
    analyzer_figures,
    bus_figures,
    make_stats,
    source_figures,
    wait_until,
)

prices = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-05, 1.234e-07, 1e21, 190.0, 0.1 + 0.2, 5e-324, -0.0]),
)
symbols = st.text(
    alphabet=st.sampled_from('AZaz09.:_-/^= ,\\"\n\té'), min_size=1, max_size=12
).filter(lambda s: s.strip() != "" and not s.endswith("\\"))


def window(window_ms: int = 60_000, count: int = 3, **kw: float | None) -> WindowMetrics:
    base: dict[str, float | None] = {
        "volume": 30.0,
        "first": 190.0,
        "last": 191.5,
        "min": 189.25,
        "max": 192.0,
        "mean": 190.5,
        "vwap": 190.61,
        "change": 1.5,
        "change_pct": 0.789,
        "rate": 0.05,
    }
    base.update(kw)
    return WindowMetrics(window_ms=window_ms, count=count, **base)  # type: ignore[arg-type]


def snap(symbol: str = "AAPL", ts_ms: int = 1_764_000_000_000, *windows: WindowMetrics):
    wins = windows or (window(),)
    return SymbolSnapshot(symbol, ts_ms, 191.5, ts_ms - 5, tuple(wins))


@settings(max_examples=300, deadline=None)
@given(
    symbol=symbols,
    window_ms=st.integers(1000, 10 * 86_400_000),
    count=st.integers(0, 10**12),
    values=st.lists(prices, min_size=10, max_size=10),
    ts=st.integers(0, 4_102_444_800_000),
)
def test_window_lines_equal_influxdb_client_points(
    symbol: str, window_ms: int, count: int, values: list[float | None], ts: int
) -> None:
    names = ("volume", "first", "last", "min", "max", "mean", "vwap", "change", "change_pct")
    kw = dict(zip(names, values, strict=False))
    kw["rate"] = values[9] if values[9] is not None else 0.0
    s = snap(symbol, ts, window(window_ms, count, **kw))
    ours = WindowLines().lines(s)
    assert ours == [window_point(s, 0).to_line_protocol()]


def test_window_lines_shape() -> None:
    empty = window(
        300_000,
        0,
        first=None,
        last=None,
        min=None,
        max=None,
        mean=None,
        vwap=None,
        change=None,
        change_pct=None,
        volume=0.0,
        rate=0.0,
    )
    lines = WindowLines().lines(snap("BINANCE:BTCUSDT", 1_764_000_001_000, window(), empty))
    assert lines == [
        "window_metrics,symbol=BINANCE:BTCUSDT,window=1m change=1.5,change_pct=0.789,count=3i,"
        "first=190,last=191.5,max=192,mean=190.5,min=189.25,rate=0.05,volume=30,vwap=190.61 "
        "1764000001000",
        "window_metrics,symbol=BINANCE:BTCUSDT,window=5m count=0i,rate=0,volume=0 1764000001000",
    ]
    assert WindowLines().lines(snap("A=B, C"))[0].startswith("window_metrics,symbol=A\\=B\\,\\ C,")


def test_window_labels() -> None:
    assert [window_label(ms) for ms in (1000, 60_000, 90_000, 300_000, 3_600_000, 86_400_000)] == [
        "1s",
        "1m",
        "90s",
        "5m",
        "1h",
        "1d",
    ]
    assert window_label(1500) == "1500ms"


def test_version_detection_picks_the_write_api() -> None:
    def info(header: str | None) -> ServerInfo:
        parsed = parse_version(header)
        return ServerInfo(header, *(parsed or (None, None)))

    assert parse_version("1.6.7~rc0") == (1, 6)
    assert parse_version("v2.7.4") == (2, 7)
    assert parse_version("OSS") is None and parse_version(None) is None
    assert choose_api("auto", info("1.6.7~rc0")) == "v1"
    assert choose_api("auto", info("1.7.11")) == "v1"
    assert choose_api("auto", info("1.8.10")) == "v2"
    assert choose_api("auto", info("v2.7.4")) == "v2"
    assert choose_api("auto", info("2.0.0-beta.16")) == "v2"
    assert choose_api("auto", info(None)) == "v2"  # says nothing (victoria-metrics): v2 write
    assert choose_api("v1", info("v2.7.4")) == "v1"  # configured wins
    assert choose_api("v2", info("1.6.7")) == "v2"


def test_small_helpers() -> None:
    assert split_bucket("stock/stock_rp") == ("stock", "stock_rp")
    assert split_bucket("stock") == ("stock", None)
    assert influxql_duration(7 * 86_400) == "1w"
    assert influxql_duration(3 * 86_400) == "3d"
    assert influxql_duration(7200) == "2h"
    assert influxql_duration(90) == "90s"
    assert safe_url("http://bob:s3cret@db:8086/x") == "http://db:8086/x"
    red = Redactor("tok-123456", "bob:hunter22")
    assert red("401 for Token tok-123456 and bob:hunter22") == "401 for Token *** and ***"


# Every figure known, each number different, so a test can tell which one was written.
KAFKA = KafkaFigures(
    brokers=("k1:9092",),
    topic="trades",
    topic_partitions=6,
    dead_lettered=7,
    producer=KafkaProducerFigures(11, 13, 17, 1.5, ack_p50=0.0031, ack_p99=0.012),
    group=KafkaGroupFigures(
        "stockup-analyzer",
        "analyzer-1",
        (0, 1),
        ((0, 12), (1, 1192)),
        commits=3001,
        commit_p50=0.0025,
        commit_errors=19,
    ),
)
RABBIT = RabbitFigures(
    (AmqpLink("publisher", "up", None, 0), AmqpLink("consumer", "down", 12.0, 2)),
    "stream",
    "stockup.trades",
    RabbitPublisherFigures(1200.5, 1180.25, 0.0012, 0.0045, 23, 5_432_100, 29, "memory alarm"),
    RabbitConsumerFigures(900.75, 31, 37, 123_456, True, 41, 43, 47),
)


def numbers_of(fig: object) -> list[tuple[str, float]]:
    """(name, value) of every number of a bus's figures and of their parts, durations in ms."""
    found = []
    for f in fields(fig):  # type: ignore[arg-type]
        value = getattr(fig, f.name)
        if is_dataclass(value):
            found += numbers_of(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = f.name.endswith(("_p50", "_p99"))
            found.append((f.name, value * 1000 if seconds else value))
    return found


@pytest.mark.parametrize("detail", [KAFKA, RABBIT], ids=["kafka", "rabbitmq"])
def test_every_number_a_bus_reports_is_a_pipeline_ops_field(detail: BusDetail) -> None:
    """A figure added to a bus's dataclass without a field name fails here, not silently."""
    ops = ops_points(fake_stats(detail=detail), host="h", role="all", at_ms=0)[0]
    written = bus_fields(detail)
    assert set(written) <= set(ops._fields)
    numbers = numbers_of(detail)
    if isinstance(detail, KafkaFigures):
        numbers.append(("lag_total", 1204))
    for name, value in numbers:
        assert any(math.isclose(v, value) for v in written.values()), name
    assert all(type(ops._fields[name]) is float for name in written)  # floats, as ever


def test_the_bus_fields_keep_the_names_the_dashboards_chart() -> None:
    """These were written before the figures were typed (Grafana charts `bus_*_ms`); a
    renamed field would start a new series and leave the panels empty."""
    kafka = bus_fields(KAFKA)
    assert {k: v for k, v in kafka.items() if k in KAFKA_NAMES} == pytest.approx(KAFKA_NAMES)
    rabbit = bus_fields(RABBIT)
    assert {k: v for k, v in rabbit.items() if k in RABBIT_NAMES} == pytest.approx(RABBIT_NAMES)
    assert bus_fields(None) == {}


KAFKA_NAMES = {
    "bus_ack_p50_ms": 3.1,
    "bus_ack_p99_ms": 12.0,
    "bus_lag": 1204.0,
    "bus_commits": 3001.0,
    "bus_commits_p50_ms": 2.5,
    "bus_dlq": 7.0,
}
RABBIT_NAMES = {
    "bus_confirm_p50_ms": 1.2,
    "bus_confirm_p99_ms": 4.5,
    "bus_unconf": 23.0,
    "bus_resent": 29.0,
    "bus_readers": 37.0,
    "bus_offset": 123_456.0,
    "bus_dlq": 43.0,
}


def fake_stats(
    drops: dict[str, int] | None = None, detail: BusDetail | None = None
) -> PipelineStats:
    return make_stats(
        at=0.0,
        uptime=3.0,
        source=source_figures(
            kind="simulator",
            endpoint="ws://x",
            frames=10,
            frames_per_s=5.0,
            trades=100,
            trades_per_s=50.0,
            last_frame_age=0.1,
            subscribed=("AAPL",),
        ),
        bus=bus_figures(
            published=10,
            published_per_s=5.0,
            consumed=10,
            consumed_per_s=5.0,
            queue_depth=0,
            detail=detail,
        ),
        analyzer=analyzer_figures(
            trades=100,
            trades_per_s=50.0,
            symbols=1,
            snapshots=3,
            watermark_ms=None,
            latency_p50=0.004,
            latency_p99=0.011,
            latency_p50_all=None,
            latency_p99_all=None,
        ),
        drops=drops or {},
        stages=(),
        sinks={},
    )


def test_ops_points_keep_their_field_types() -> None:
    points = ops_points(
        fake_stats({"duplicate": 4, "bad_type": 1}, replace(RABBIT, consumer=None)),
        host="h 1",
        role="all",
        at_ms=1_700_000_000_000,
        sink=SinkFigures(state="connected", written=7, pending=0),
    )
    lines = point_lines(points)
    assert len(lines) == 3
    ops = lines[0]
    assert ops.startswith("pipeline_ops,host=h\\ 1,instance=h\\ 1,role=all ")
    for field in (
        "bus_published=10i",
        "source_connected=1i",
        "influx_written=7i",
        "latency_p99_ms=11",
        "bus_confirm_p99_ms=4.5",
        "analyzer_trades_per_s=50",
    ):
        assert field in ops, field
    assert "latency_p50_all_ms" not in ops  # unknown figures are left out, not written as 0
    assert "bus_unacked" not in ops  # nor those of a part the process does not run
    assert lines[1] == (
        "pipeline_drops,host=h\\ 1,instance=h\\ 1,reason=bad_type,role=all count=1i 1700000000000"
    )


def test_ops_points_are_per_process_of_the_cluster() -> None:
    """Two analyzers on one host are two series (their instance ids), with their partitions."""
    base = fake_stats()
    lag = (PartitionLag(0, 0, 0.0), PartitionLag(3, 40, 1.5))
    stats = replace(
        base,
        bus=replace(base.bus, partitions=lag),
        identity=ProcessIdentity("analyzer", "box", 42, 1, instance="box-1"),
    )
    ops = point_lines(ops_points(stats, host="box", role="analyzer", at_ms=1))[0]
    assert ops.startswith("pipeline_ops,host=box,instance=box-1,role=analyzer ")
    assert "partitions_owned=2i" in ops
    assert "lag_max_s=1.5" in ops
    alone = point_lines(
        ops_points(
            replace(stats, identity=replace(stats.identity, instance="")),
            host="box",
            role="query",
            at_ms=1,
        )
    )[0]
    assert alone.startswith("pipeline_ops,host=box,instance=box:42,role=query ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_write_never_blocks_and_the_bound_counts_drops() -> None:
    """No server at all: write() stays O(1)-ish, the buffer stops at its bound, the rest is
    counted by reason, and close() gives up after `timeout` counting what was never sent."""
    port = free_port()  # nothing listens there
    cfg = InfluxConfig(
        enabled=True,
        url=f"http://127.0.0.1:{port}",
        token="tok-abcdef-secret",
        buffer_points=50,
        timeout=0.5,
        flush_interval=0.05,
    )
    drops = Drops()
    sink = InfluxSink(cfg, drops=drops)
    sink.start()
    two = (window(60_000), window(300_000))
    for i in range(40):  # 80 points: 50 fit; write() returns at once with no server at all
        sink.write([snap("AAPL", 1_764_000_000_000 + i * 1000, *two)])
    assert sink.pending == 50
    assert drops.get("influx_buffer_full") == 30
    await wait_until(
        lambda: sink.state == "down" and sink.figures().error is not None,
        timeout=5,
        what="state down with its error",
    )
    figures = sink.figures()
    assert figures.pending == 50 and figures.dropped == 30
    assert "unreachable" in str(figures.error)
    await sink.close()  # gives up after `timeout` without a successful write
    assert drops.get("influx_unsent_at_exit") == 50
    assert sink.pending == 0 and sink.dropped == 80
    assert "secret" not in repr(sink.figures())


async def test_no_secret_reaches_errors_or_logs(caplog) -> None:
    """A server that refuses the credentials: the error is shown, the password never is."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /ping
            self.send_response(204)
            self.send_header("X-Influxdb-Version", "1.6.7")
            self.end_headers()

        def do_POST(self) -> None:
            auth = self.headers.get("Authorization", "")
            body = f'{{"error":"authorization failed for {auth} p=hunter2-pw"}}'.encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = InfluxConfig(
            enabled=True,
            url=f"http://127.0.0.1:{server.server_address[1]}",
            username="bob",
            password="hunter2-pw",
            create=True,
            flush_interval=0.05,
            timeout=1,
        )
        drops = Drops()
        sink = InfluxSink(cfg, drops=drops)
        sink.start()
        sink.write([snap()])
        await wait_until(lambda: drops.get("influx_rejected") == 1, timeout=5, what="rejected")
        await sink.close()
    finally:
        server.shutdown()
    text = repr(sink.figures()) + caplog.text
    assert "401" in text and "authorization failed" in text
    assert "hunter2-pw" not in text
    assert "Ym9iOmh1bnRlcjItcHc=" not in text  # base64 of bob:hunter2-pw, as the header carries


def test_float_formatting_round_trips() -> None:
    line = WindowLines().lines(snap("X", 1, window(vwap=1.234e-07, volume=1e21)))[0]
    fields = dict(kv.split("=") for kv in line.split(" ")[1].split(","))
    assert float(fields["vwap"]) == 1.234e-07 and float(fields["volume"]) == 1e21
    assert not math.isnan(float(fields["mean"]))


async def test_v2_write_api_retries_then_gives_up_at_shutdown() -> None:
    """A server that answers /ping but fails every write with 503: influxdb-client's WriteApi
    retries (counted, state `retrying`), the buffer holds the points, and close() ends after
    `timeout` without progress, counting them as unsent instead of hanging."""
    import http.server
    import threading

    hits = {"write": 0}

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)  # no version header: the v2 write path
            self.end_headers()

        def do_POST(self) -> None:
            hits["write"] += 1
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = InfluxConfig(
            enabled=True,
            url=f"http://127.0.0.1:{server.server_address[1]}",
            token="v2-token-secret",
            create=False,
            flush_interval=0.05,
            timeout=1,
        )
        drops = Drops()
        sink = InfluxSink(cfg, drops=drops)
        sink.start()
        sink.write([snap(), snap("MSFT")])
        await wait_until(lambda: sink.retries >= 2, timeout=10, what="two retries")
        assert sink.figures().state == "retrying" and sink.api == "v2"
        assert sink.pending == 2
        started = time.perf_counter()
        await sink.close()
        took = time.perf_counter() - started
    finally:
        server.shutdown()
    assert took < 8, f"close took {took:.1f}s"
    assert drops.get("influx_unsent_at_exit") == 2 and sink.pending == 0
    assert hits["write"] >= 3
    assert "v2-token-secret" not in repr(sink.figures())


def test_grafana_files_fit_together() -> None:
    """The provisioned datasource's uid is the one every panel names; the dashboard provider
    reads the folder the compose file mounts; panel ids are unique; queries are raw InfluxQL
    that name the retention policy. (The queries themselves run in
    tests/integration/test_influx.py.)"""
    import json
    import re

    root = REPO / "grafana"
    ds = (root / "provisioning" / "datasources" / "influxdb.yaml").read_text()
    uid = re.search(r"^\s+uid:\s*(\S+)", ds, re.M).group(1)
    assert re.search(r"^\s+type:\s*influxdb\s*$", ds, re.M)
    assert re.search(r"^\s+url:\s*http://influxdb:8086\s*$", ds, re.M)
    assert re.search(r"^\s+database:\s*stock\s*$", ds, re.M)
    provider = (root / "provisioning" / "dashboards" / "stockup.yaml").read_text()
    assert re.search(r"^\s+path:\s*/var/lib/grafana/dashboards\s*$", provider, re.M)
    uids = set()
    for path in sorted((root / "dashboards").glob("*.json")):
        doc = json.loads(path.read_text())
        uids.add(doc["uid"])
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in doc["panels"]:
            assert panel["datasource"]["uid"] == uid, (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid and target["rawQuery"]
                assert '"$rp".' in target["query"], (path.name, panel["title"])
        for var in doc["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"]["uid"] == uid
    assert len(uids) == 2
