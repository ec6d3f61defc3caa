"""The InfluxDB sink against real servers: Debian's InfluxDB 1.6 (v1 `/write`, InfluxQL) and
victoria-metrics (`/api/v2/write`, the path influxdb-client's WriteApi takes for 1.8+ and 2.x).

Every test writes through the real pipeline (`build_pipeline` with
`sinks.influx.enabled`) and reads back what the server stored. Databases are unique per test
and dropped at the end; victoria-metrics series are told apart by unique symbols and host tags.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from stockup_tui.config import InfluxConfig, Settings
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot, window_label
from stockup_tui.engine.pipeline import Pipeline
from stockup_tui.engine.sinks.influx.sink import InfluxSink
from stockup_tui.engine.sources.recording import FrameRecorder
from stockup_tui.engine.stats import KafkaFigures, KafkaProducerFigures
from stockup_tui.engine.wiring import build_pipeline
from tests import helpers
from tests.helpers import REPO, wait_until
from tests.services import require_influx, require_victoria, services_required

pytestmark = pytest.mark.influx

DASHBOARDS = REPO / "grafana" / "dashboards"
INFLUX_CTL = os.environ.get("TEST_INFLUX_CTL", str(REPO / "scripts" / "influxdb.sh"))
FIELDS = (
    "count",
    "volume",
    "first",
    "last",
    "min",
    "max",
    "mean",
    "vwap",
    "change",
    "change_pct",
    "rate",
)


class ListSink(helpers.ListSink):
    @property
    def points(self) -> int:
        return sum(len(s.windows) for s in self.snapshots)


# -- talking to the servers ----------------------------------------------------------------------


def _http(url: str, data: bytes | None = None, timeout: float = 10.0) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def influxql(base: str, q: str, db: str | None = None) -> list[dict[str, Any]]:
    """Runs InfluxQL; returns the first statement's series (raises on a statement error)."""
    params = {"q": q, "epoch": "ms"}
    if db:
        params["db"] = db
    doc = json.loads(_http(f"{base}/query", urllib.parse.urlencode(params).encode()))
    result = doc["results"][0]
    if "error" in result:
        raise AssertionError(f"{q}: {result['error']}")
    return result.get("series", [])


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in series:
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            row.update(s.get("tags", {}))
            out.append(row)
    return out


def pings(base: str) -> bool:
    try:
        _http(f"{base}/ping", timeout=1)
        return True
    except OSError:
        return False


@pytest.fixture
def influx() -> Iterator[tuple[str, str]]:
    """The server and a database name of its own (dropped afterwards)."""
    base = require_influx()
    db = f"t_{uuid.uuid4().hex[:10]}"
    yield base, db
    for name in (db, f"{db}_small"):
        with contextlib.suppress(OSError):
            influxql(base, f'DROP DATABASE "{name}"')


# -- recordings ----------------------------------------------------------------------------------


def make_recent_recording(
    path: Path, symbols: Sequence[str], *, frames: int = 300, seed: int = 5
) -> int:
    """A deterministic recording whose trades end a few minutes ago (inside the 7-day
    retention InfluxDB applies and victoria-metrics' default month); returns the trades in it.
    Prices include tiny crypto-like ones (formatted as 1.2e-05) and duplicates."""
    rng = random.Random(seed)
    rec = FrameRecorder(path)
    t = (int(time.time()) - 600) * 1000 - frames * 400
    prices = {s: (0.0000123 if i == 2 else 100.0 + 50 * i) for i, s in enumerate(symbols)}
    n = 0
    for _ in range(frames):
        data = []
        for _ in range(rng.randint(1, 8)):
            t += rng.randint(0, 300)
            sym = rng.choice(list(symbols))
            step = prices[sym] * 0.001
            prices[sym] = max(1e-7, prices[sym] + rng.choice((-step, 0.0, step)))
            trade = {"s": sym, "p": prices[sym], "t": t, "v": rng.randint(1, 400), "c": None}
            data.append(trade)
            n += 1
            if rng.random() < 0.05:
                data.append(dict(trade))  # the feed's duplicates: dropped, never stored
        # received a little after its last trade, as a live feed would
        rec.write(orjson.dumps({"type": "trade", "data": data}).decode(), (t + 40) / 1000)
    rec.close()
    return n


def replay_settings(path: Path, symbols: Sequence[str], influx: dict[str, Any]) -> Settings:
    return Settings.model_validate(
        {
            "symbols": list(symbols),
            "windows": ["1m", "5m"],
            "source": {"kind": "replay", "replay": path},
            "sinks": {"influx": {"enabled": True, "flush_interval": "100ms", **influx}},
        }
    )


def influx_sink(pipe: Pipeline) -> InfluxSink:
    return next(s for s in pipe.sinks if isinstance(s, InfluxSink) and s.name == "influx")


async def run_replay(settings: Settings, host: str) -> tuple[Pipeline, ListSink]:
    sink = ListSink()
    pipe = build_pipeline(settings, sinks=[sink])
    influx_sink(pipe).host = host
    await pipe.start()
    await pipe.wait_source_done()
    await pipe.stop()
    return pipe, sink


def expected_rows(snapshots: Sequence[SymbolSnapshot]) -> dict[tuple[str, str, int], dict]:
    want = {}
    for snap in snapshots:
        for wm in snap.windows:
            want[(snap.symbol, window_label(wm.window_ms), snap.ts_ms)] = {
                "count": wm.count,
                **{f: getattr(wm, f) for f in FIELDS if f != "count"},
            }
    return want


# -- tests ---------------------------------------------------------------------------------------


async def test_replay_is_stored_exactly_and_a_second_replay_overwrites(
    influx: tuple[str, str], tmp_path: Path
) -> None:
    base, db = influx
    symbols = ["AAPL", "BRK.B", "BINANCE:SHIBUSDT", "X=Y"]  # `=` must be escaped in tags
    path = tmp_path / "session.jsonl"
    make_recent_recording(path, symbols)
    s = replay_settings(path, symbols, {"url": base, "bucket": f"{db}/{db}_rp"})
    pipe, sink = await run_replay(s, host="test-replay")
    figures = influx_sink(pipe).figures()
    assert figures.api == "v1" and figures.dropped == 0 and figures.pending == 0
    assert pipe.drops.get("duplicate") > 0
    assert len(sink.snapshots) > 400

    # Created with the configured retention, as the database's default policy.
    (policies,) = influxql(base, f'SHOW RETENTION POLICIES ON "{db}"')
    assert [dict(zip(policies["columns"], v, strict=True)) for v in policies["values"]] == [
        {
            "name": f"{db}_rp",
            "duration": "168h0m0s",
            "shardGroupDuration": "24h0m0s",
            "replicaN": 1,
            "default": True,
        }
    ]

    want = expected_rows(sink.snapshots)
    got = {
        (r["symbol"], r["window"], r["time"]): r
        for r in rows(influxql(base, 'SELECT * FROM "window_metrics"', db))
    }
    assert set(got) == set(want)  # one point per symbol per window per emitted snapshot
    for key, fields in want.items():
        stored = {f: got[key][f] for f in FIELDS}
        assert stored == fields, key  # exact: floats survive line protocol and JSON

    # The same replay again: every point lands on the same series and time, nothing doubles.
    pipe2, sink2 = await run_replay(s, host="test-replay")
    assert sink2.snapshots == sink.snapshots
    assert (influx_sink(pipe2).figures().written or 0) >= len(want)
    again = rows(influxql(base, 'SELECT * FROM "window_metrics"', db))
    assert len(again) == len(want)
    (counted,) = rows(influxql(base, 'SELECT count("count") FROM "window_metrics"', db))
    assert counted["count"] == len(want)

    # The operational figures went to their own measurement, one point per interval + close.
    ops = rows(influxql(base, 'SELECT * FROM "pipeline_ops"', db))
    assert len(ops) >= 2 and {r["host"] for r in ops} == {"test-replay"}
    assert ops[-1]["analyzer_trades"] == pipe2.analyzer.ingested
    drops = rows(influxql(base, 'SELECT last("count") FROM "pipeline_drops" GROUP BY "reason"', db))
    assert {r["reason"]: r["last"] for r in drops}["duplicate"] == pipe2.drops.get("duplicate")


def substitute(query: str, values: dict[str, str]) -> str:
    """Grafana's macros and variables, as Grafana would expand them for this test run."""
    for name in sorted(values, key=len, reverse=True):
        query = query.replace(f"${name}", values[name])
    unknown = re.findall(r"\$\{?\w+", query)  # (a bare `$` is a regex anchor)
    assert not unknown, f"macros the test does not know: {unknown} in {query}"
    return query


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    doc = json.loads(path.read_text())
    out = [
        (f"variable {v['name']}", v["query"])
        for v in doc["templating"]["list"]
        if v["type"] == "query"  # (the `rp` constant is a name, not a query)
    ]

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                assert target.get("rawQuery"), f"{panel['title']}: raw InfluxQL expected"
                out.append((panel["title"], target["query"]))
            walk(panel.get("panels", []))

    walk(doc["panels"])
    return out


async def test_every_grafana_dashboard_query_returns_rows(influx: tuple[str, str]) -> None:
    """A live run (simulator) then every query of both shipped dashboards, macros filled in,
    against that database: a renamed field or measurement fails here, not in front of a user.

    The database exists beforehand with its own default policy (as the compose file's
    `INFLUXDB_DB: stock` makes it), so the sink adds its policy as a non-default one: the
    dashboards name the policy (`$rp`) and must find the points anyway."""
    base, db = influx
    influxql(base, f'CREATE DATABASE "{db}"')
    host = f"test-{uuid.uuid4().hex[:6]}"
    symbols = ["AAPL", "MSFT", "BINANCE:BTCUSDT"]
    s = Settings.model_validate(
        {
            "symbols": symbols,
            "windows": ["1m", "5m"],
            "simulator": {"rate": 400, "seed": 9},
            "sinks": {
                "influx": {
                    "enabled": True,
                    "url": base,
                    "bucket": f"{db}/{db}_rp",
                    "ops_interval": "300ms",
                    "flush_interval": "200ms",
                }
            },
        }
    )
    pipe = build_pipeline(s, live_interval=0.05)
    sink = influx_sink(pipe)
    sink.host = host
    await pipe.start()
    try:
        # The memory bus has no produce/confirm latency; the Kafka and RabbitMQ buses report
        # theirs in their own figures, which the ops panel charts as bus_*_ms fields.
        pipe.bus.stats.detail = KafkaFigures(
            ("localhost:9092",),
            "trades",
            3,
            0,
            KafkaProducerFigures(10, 0, 0, 0.0, ack_p50=0.0012, ack_p99=0.0034),
            None,
        )
        await wait_until(lambda: sink.written > 40, timeout=30, what="points written")
        await wait_until(lambda: pipe.drops.get("duplicate") > 0, timeout=10, what="a drop")
        await wait_until(lambda: pipe.stats.uptime > 3.5, timeout=10, what="3.5 s of run")
    finally:
        await pipe.stop()
    assert sink.figures().pending == 0 and sink.dropped == 0

    values = {
        "timeFilter": "time > now() - 1h",
        "__interval": "1s",
        "symbol": "(" + "|".join(re.escape(x) for x in symbols) + ")",
        "window": "1m",
        "host": re.escape(host),
        "rp": f"{db}_rp",
    }
    files = sorted(DASHBOARDS.glob("*.json"))
    assert [f.name for f in files] == ["pipeline-ops.json", "stock-metrics.json"]
    checked = 0
    for path in files:
        for title, raw in dashboard_queries(path):
            series = influxql(base, substitute(raw, values), db)
            assert series and any(s["values"] for s in series), f"{path.name}: {title}: no rows"
            checked += 1
    assert checked >= 18


def influx_ctl(action: str) -> None:
    subprocess.run([INFLUX_CTL, action], check=True, timeout=120, capture_output=True)


def require_control(ctl: str | Path, what: str) -> None:
    """Skips unless `ctl stop` would stop the server that answers. A missing script fails under
    STOCKUP_REQUIRE_SERVICES=1; a server that another services directory started (a second
    checkout on the same machine) is never taken away from it: skipped, with the reason."""
    if not Path(ctl).exists():
        reason = f"{ctl} not found: cannot stop and start {what}"
        if services_required():
            pytest.fail(reason)
        pytest.skip(reason)
    out = subprocess.run([str(ctl), "status"], timeout=60, capture_output=True, text=True)
    if "not one this script started" in out.stdout:
        pytest.skip(
            f"the {what} that answers was not started by {ctl} (another STOCKUP_SERVICES_DIR?): "
            "this test does not stop a server it does not own"
        )


async def test_influxdb_stopped_mid_run_loses_nothing_within_the_bound(
    influx: tuple[str, str],
) -> None:
    """InfluxDB goes away for a while in the middle of a live run and comes back. The pipeline
    never stalls; the sink with the default bound writes every point afterwards; a second sink
    with a bound of a few points drops some, and every one of them is counted."""
    base, db = influx
    require_control(INFLUX_CTL, "InfluxDB")
    s = Settings.model_validate(
        {
            "symbols": ["AAPL", "MSFT", "TSLA"],
            "windows": ["1m"],
            "simulator": {"rate": 300, "seed": 4},
            "sinks": {
                "influx": {
                    "enabled": True,
                    "url": base,
                    "bucket": f"{db}/{db}_rp",
                    "flush_interval": "100ms",
                    "ops_interval": "1s",
                }
            },
        }
    )
    small_drops = Drops()
    small = InfluxSink(
        InfluxConfig(
            enabled=True, url=base, bucket=f"{db}_small", buffer_points=4, flush_interval=0.1
        ),
        drops=small_drops,
    )
    small.name = "influx_small"
    sink = ListSink()
    pipe = build_pipeline(s, sinks=[sink, small], live_interval=0.05)
    big = influx_sink(pipe)
    await pipe.start()
    stopped = False
    try:
        await wait_until(lambda: big.written > 3 and small.written > 3, timeout=30, what="writes")
        influx_ctl("stop")
        stopped = True
        assert not pings(base)
        before = (pipe.analyzer.ingested, len(sink.snapshots), pipe.snapshots.version)
        await wait_until(lambda: big.pending >= 9, timeout=30, what="points buffered")
        # The pipeline went on: trades analyzed, snapshots emitted, the screen's store fed.
        assert pipe.analyzer.ingested > before[0] and len(sink.snapshots) > before[1]
        assert pipe.snapshots.version > before[2]
        await wait_until(lambda: small.dropped > 0, timeout=30, what="small buffer drops")
        pipe.stats = pipe._build_stats()
        assert pipe.stats.sinks["influx"].state in ("retrying", "down")
        assert (pipe.stats.sinks["influx"].retries or 0) > 0
        outage_pending = big.pending
        influx_ctl("start")
        stopped = False
        await wait_until(lambda: pings(base), timeout=60, what="InfluxDB back")
        await wait_until(
            lambda: big.pending == 0 and small.pending == 0, timeout=60, what="buffers written"
        )
        assert big.state == "connected"
    finally:
        if stopped:
            influx_ctl("start")
        await pipe.stop()
    assert outage_pending >= 9
    # Default bound: nothing lost.
    assert big.dropped == 0 and not any(r.startswith("influx") for r in pipe.drops.snapshot())
    (stored,) = rows(influxql(base, 'SELECT count("count") FROM "window_metrics"', db))
    assert stored["count"] == sink.points
    # Bound of 4 points: what is missing is exactly what was counted.
    (stored_small,) = rows(
        influxql(base, 'SELECT count("count") FROM "window_metrics"', f"{db}_small")
    )
    assert small_drops.get("influx_buffer_full") == small.dropped > 0
    assert stored_small["count"] + small.dropped == sink.points


# -- victoria-metrics: the v2 write path ---------------------------------------------------------


def vm_export(base: str, match: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"match[]": match}).encode()
    return [json.loads(line) for line in _http(f"{base}/api/v1/export", data).splitlines()]


async def test_v2_write_path_against_victoria_metrics(tmp_path: Path) -> None:
    """influxdb-client's batching WriteApi to `/api/v2/write` (victoria-metrics stores every
    field as `<measurement>_<field>`), read back exactly through its export API. Its buckets
    API does not exist: `create = true` reports that and writes anyway."""
    base = require_victoria()
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"V{tag}A", f"V{tag}B", f"V{tag}:C"]
    path = tmp_path / "session.jsonl"
    make_recent_recording(path, symbols, frames=150, seed=8)
    s = replay_settings(
        path,
        symbols,
        {
            "url": base,
            "api": "auto",
            "bucket": "stock/stock_rp",
            "token": "vm-ignores-tokens",
            "create": True,
        },
    )
    try:
        pipe, sink = await run_replay(s, host=f"test-{tag}")
        figures = influx_sink(pipe).figures()
        assert figures.api == "v2"  # no X-Influxdb-Version header: the v2 write
        assert (figures.written or 0) >= sink.points and figures.dropped == 0
        assert "cannot create bucket" in str(figures.error)
        assert "vm-ignores-tokens" not in repr(figures)
        _http(f"{base}/internal/force_flush")
        want = expected_rows(sink.snapshots)
        got: dict[tuple[str, str, int], dict[str, float]] = {}

        def collect() -> bool:
            got.clear()
            for series in vm_export(base, f'{{__name__=~"window_metrics_.*",symbol=~"V{tag}.*"}}'):
                m = series["metric"]
                field = m["__name__"].removeprefix("window_metrics_")
                for ts, value in zip(series["timestamps"], series["values"], strict=True):
                    got.setdefault((m["symbol"], m["window"], ts), {})[field] = value
            return set(got) == set(want)

        deadline = time.monotonic() + 20
        while not collect() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert set(got) == set(want)
        for key, fields in want.items():
            present = {f: v for f, v in fields.items() if v is not None}
            assert set(got[key]) == set(present), key
            # victoria-metrics keeps about 12 significant digits (InfluxDB keeps all 17).
            for f, v in present.items():
                assert math.isclose(got[key][f], v, rel_tol=1e-11, abs_tol=1e-300), (key, f)
        match = f'{{__name__="pipeline_ops_analyzer_trades",host="test-{tag}"}}'
        deadline = time.monotonic() + 20
        while not (ops := vm_export(base, match)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ops and ops[0]["values"][-1] == pipe.analyzer.ingested
    finally:
        for match in (f'{{symbol=~"V{tag}.*"}}', f'{{host="test-{tag}"}}'):
            data = urllib.parse.urlencode({"match[]": match}).encode()
            with contextlib.suppress(OSError):
                _http(f"{base}/api/v1/admin/tsdb/delete_series", data)


async def test_v2_server_stopped_mid_run_loses_nothing() -> None:
    """The v2 path through an outage: victoria-metrics stopped in the middle of a live run,
    influxdb-client's WriteApi retries with backoff while the sink buffers, and after the
    restart every emitted point is stored."""
    base = require_victoria()
    ctl = REPO / "scripts" / "victoria-metrics.sh"
    require_control(ctl, "victoria-metrics")
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"W{tag}A", f"W{tag}B"]
    s = Settings.model_validate(
        {
            "symbols": symbols,
            "windows": ["1m"],
            "simulator": {"rate": 200, "seed": 6},
            "sinks": {
                "influx": {
                    "enabled": True,
                    "url": base,
                    "create": False,
                    "flush_interval": "100ms",
                    "ops_interval": "1s",
                }
            },
        }
    )
    sink = ListSink()
    pipe = build_pipeline(s, sinks=[sink], live_interval=0.05)
    v2 = influx_sink(pipe)
    v2.host = f"test-{tag}"
    await pipe.start()
    stopped = False
    try:
        await wait_until(lambda: v2.written > 3, timeout=30, what="writes")
        assert v2.api == "v2"
        subprocess.run([ctl, "stop"], check=True, timeout=120, capture_output=True)
        stopped = True
        await wait_until(
            lambda: v2.pending >= 6 and v2.retries > 0, timeout=30, what="points buffered, retries"
        )
        assert v2.state == "retrying"
        subprocess.run([ctl, "start"], check=True, timeout=120, capture_output=True)
        stopped = False
        await wait_until(lambda: v2.pending == 0, timeout=60, what="buffer written")
    finally:
        if stopped:
            subprocess.run([ctl, "start"], check=True, timeout=120, capture_output=True)
        await pipe.stop()
    try:
        assert v2.dropped == 0 and v2.state == "closed"
        _http(f"{base}/internal/force_flush")
        match = f'{{__name__="window_metrics_count",symbol=~"W{tag}.*"}}'
        deadline = time.monotonic() + 20
        stored = 0
        while time.monotonic() < deadline:
            stored = sum(len(x["timestamps"]) for x in vm_export(base, match))
            if stored >= sink.points:
                break
            time.sleep(0.5)
        assert stored == sink.points
    finally:
        for match in (f'{{symbol=~"W{tag}.*"}}', f'{{host="test-{tag}"}}'):
            data = urllib.parse.urlencode({"match[]": match}).encode()
            with contextlib.suppress(OSError):
                _http(f"{base}/api/v1/admin/tsdb/delete_series", data)


async def test_headless_with_influx_enabled(influx: tuple[str, str], tmp_path: Path) -> None:
    """`stockup-tui --headless` builds the sink from the settings alone (no code of its own)
    and its status line says how the sink is doing."""
    import io

    from stockup_tui.headless import run_headless

    base, db = influx
    path = tmp_path / "session.jsonl"
    make_recent_recording(path, ["AAPL", "MSFT"], frames=80)
    s = replay_settings(path, ["AAPL", "MSFT"], {"url": base, "bucket": f"{db}/{db}_rp"})
    out = io.StringIO()
    assert await run_headless(s, out) == 0
    assert "| influx closed pending 0" in out.getvalue().splitlines()[-2]
    (counted,) = rows(influxql(base, 'SELECT count("count") FROM "window_metrics"', db))
    assert counted["count"] > 50
