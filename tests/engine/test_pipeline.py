"""The whole engine, end to end: simulator -> real websocket -> parser -> memory bus -> analyzer
-> sinks; replay exactness against a brute-force oracle; supervision and draining."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stockup_tui.config import Settings
from stockup_tui.engine.bus.memory import MemoryBus
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.pipeline import Pipeline
from stockup_tui.engine.sources.base import NullSource
from stockup_tui.engine.sources.finnhub import FinnhubClient
from stockup_tui.engine.stages.publish import READ_AHEAD_S
from stockup_tui.engine.wiring import build_pipeline
from tests.helpers import ListSink, brute_force, close, make_recording, wait_until


def settings(**data: Any) -> Settings:
    return Settings.model_validate(data)


async def test_live_pipeline_on_the_simulator() -> None:
    s = settings(
        symbols=["AAPL", "MSFT", "TSLA"],
        windows=["1m"],
        simulator={"rate": 3000, "seed": 3, "duplicate_fraction": 0.1},
    )
    pipe = build_pipeline(s, live_interval=0.05)
    await pipe.start()
    try:
        await wait_until(
            lambda: set(pipe.snapshots.latest) == {"AAPL", "MSFT", "TSLA"}, what="3 symbols"
        )
        await wait_until(lambda: pipe.analyzer.ingested > 2000, what="2000 trades analyzed")
        await wait_until(lambda: pipe.drops.get("duplicate") > 0, what="duplicates dropped")
        await wait_until(lambda: pipe.stats.analyzer.latency_p99 is not None, what="latency")
        snap = pipe.snapshots.latest["AAPL"]
        assert snap.windows[0].count > 0 and snap.last_price is not None
        assert pipe.stats.source.connected and pipe.stats.source.kind == "simulator"
    finally:
        await pipe.stop()
    # Drained: every trade that left the parser reached the analyzer.
    assert pipe.analyzer.ingested == pipe.parser.trades
    assert pipe.bus.stats.consumed_messages == pipe.bus.stats.published_messages
    assert all(st.status in ("stopped", "finished") for st in pipe.stats.stages)


async def test_without_a_screen_no_live_snapshot_is_taken_and_the_figures_go_on() -> None:
    """Headless (`live_interval=None`): nobody reads live snapshots, so none is computed (at a
    live pace they were a tenth of the analyzer's work); the stats are still refreshed by the
    clock, and the emitted snapshots still reach the sinks."""
    s = settings(symbols=["AAPL"], windows=["1m"], emit_interval="1s", simulator={"rate": 2000})
    pipe = build_pipeline(s, live_interval=None)
    calls = 0
    live_all = pipe.analyzer.live_all

    def counting(points: int = 0) -> Any:
        nonlocal calls
        calls += 1
        return live_all(points)

    pipe.analyzer.live_all = counting  # type: ignore[method-assign]
    await pipe.start()
    try:
        await wait_until(lambda: pipe.analyzer.ingested > 500, what="trades analyzed")
        first = pipe.stats.at
        await wait_until(lambda: pipe.stats.at > first, what="the stats refreshed by the clock")
        await wait_until(lambda: pipe.snapshots.emitted > 0, what="an emitted snapshot", timeout=30)
    finally:
        await pipe.stop()
    assert calls == 0 and not pipe.snapshots.latest  # only live snapshots are kept there


async def test_bad_frames_are_counted_and_the_stream_goes_on() -> None:
    s = settings(symbols=["AAPL"], windows=["1m"], simulator={"rate": 2000, "malformed_rate": 0.3})
    pipe = build_pipeline(s)
    await pipe.start()
    try:
        await wait_until(lambda: len(pipe.drops.snapshot()) >= 4, what="4 kinds of bad input")
        before = pipe.analyzer.ingested
        await wait_until(lambda: pipe.analyzer.ingested > before + 500, what="trades flowing")
    finally:
        await pipe.stop()
    assert all(st.restarts == 0 for st in pipe.stats.stages)


async def test_failed_stage_is_restarted_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(symbols=["AAPL"], windows=["1m"], simulator={"rate": 1000})
    pipe = build_pipeline(s)
    original = FinnhubClient.run
    calls = {"n": 0}

    async def flaky_run(self: FinnhubClient, on_frame: Any, pacer: Any = None) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected failure")
        await original(self, on_frame, pacer)

    monkeypatch.setattr(FinnhubClient, "run", flaky_run)
    await pipe.start()
    try:
        await wait_until(lambda: pipe.analyzer.ingested > 100, what="trades after restart")
        pipe.stats = pipe._build_stats()
        source = next(st for st in pipe.stats.stages if st.name == "source")
        assert source.restarts == 1 and "injected failure" in (source.last_error or "")
    finally:
        await pipe.stop()


async def run_replay(
    path: Path, windows: list[str], *, encode: bool = False
) -> tuple[Pipeline, ListSink]:
    sink = ListSink()
    s = settings(symbols=["AAPL"], windows=windows, source={"kind": "replay", "replay": path})
    pipe = build_pipeline(s, sinks=[sink])
    pipe.publisher.encode = encode  # True: through the codec, as a network bus carries them
    await pipe.start()
    await pipe.wait_source_done()
    await pipe.stop()
    return pipe, sink


async def test_records_carried_in_process_give_what_the_codec_gives(tmp_path: Path) -> None:
    """The in-process bus hands the records over without encoding them: the snapshots are the
    ones the same messages give through the codec (as every network bus carries them)."""
    path = tmp_path / "session.jsonl"
    make_recording(path)
    carried, direct = await run_replay(path, ["1m", "5m"])
    encoded, through_codec = await run_replay(path, ["1m", "5m"], encode=True)
    assert direct.snapshots and direct.snapshots == through_codec.snapshots
    assert carried.bus.stats.published_messages == encoded.bus.stats.published_messages


async def test_replay_metrics_are_exact_and_reproducible(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    truth = make_recording(path)
    pipe, sink = await run_replay(path, ["1m", "5m"])
    assert pipe.analyzer.ingested == sum(len(v) for v in truth.values())
    assert pipe.drops.get("duplicate") > 0
    assert pipe.drops.get("malformed_json") == 8
    assert len(sink.snapshots) > 100
    for snap in sink.snapshots:
        for wm in snap.windows:
            want = brute_force(truth[snap.symbol], snap.ts_ms, wm.window_ms)
            assert wm.count == want["count"], (snap.symbol, snap.ts_ms, wm.window_ms)
            if wm.count:
                assert (wm.first, wm.last, wm.min, wm.max) == (
                    want["first"],
                    want["last"],
                    want["min"],
                    want["max"],
                )
                assert close(wm.volume, want["volume"])
                assert close(wm.mean, want["mean"])
                assert close(wm.vwap, want["vwap"])
    # The final live snapshot covers everything received.
    live = pipe.snapshots.latest["MSFT"]
    assert live.last_trade_ms == truth["MSFT"][-1][0]
    # Same input, same output.
    _, again = await run_replay(path, ["1m", "5m"])
    assert again.snapshots == sink.snapshots


async def test_a_flush_too_big_for_one_message_goes_out_in_groups_with_the_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One partition's flush is split into groups of at most GROUP_MAX_TRADES trades (a single
    symbol's batch whole); what the analyzer emits does not change."""
    from stockup_tui.engine.bus.memory import MemoryBus
    from stockup_tui.engine.codec import GROUP_KEY
    from stockup_tui.engine.stages import publish as publish_module

    path = tmp_path / "session.jsonl"
    make_recording(path)
    _, reference = await run_replay(path, ["1m"])
    calls: list[list[tuple[int, int]]] = []  # per publish: (trades, symbols) of each group
    publish = MemoryBus.publish

    async def spy(self: MemoryBus, messages: Any) -> None:
        groups = [m.record for m in messages if m.key == GROUP_KEY]  # carried as they are
        calls.append([(sum(len(b) for b in g), len(g)) for g in groups])
        await publish(self, messages)

    monkeypatch.setattr(MemoryBus, "publish", spy)
    monkeypatch.setattr(publish_module, "GROUP_MAX_TRADES", 20)
    _, split = await run_replay(path, ["1m"])
    assert split.snapshots == reference.snapshots
    sizes = [size for call in calls for size in call]
    assert any(len(call) > 1 for call in calls)  # a flush went out as several groups
    assert any(symbols > 1 for _, symbols in sizes)  # of several symbols each
    assert all(trades <= 20 or symbols == 1 for trades, symbols in sizes)


async def test_a_batch_the_analyzer_chokes_on_is_counted_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stockup_tui.engine.analyzer import Analyzer

    original = Analyzer.trades

    def choke_on_msft(self: Analyzer, batch: Any, *args: Any) -> list[SymbolSnapshot]:
        if batch.symbol == "MSFT":
            raise ValueError("injected analyzer bug")
        return original(self, batch, *args)

    monkeypatch.setattr(Analyzer, "trades", choke_on_msft)
    s = settings(symbols=["AAPL", "MSFT"], windows=["1m"], simulator={"rate": 2000})
    pipe = build_pipeline(s)
    await pipe.start()
    try:
        await wait_until(lambda: pipe.drops.get("analyzer_error") > 10, what="counted errors")
        before = pipe.analyzer.ingested
        await wait_until(lambda: pipe.analyzer.ingested > before + 200, what="AAPL flowing")
    finally:
        await pipe.stop()
    assert pipe.analyzer.ingested + pipe.drops.get("analyzer_error") == pipe.parser.trades
    assert all(st.restarts == 0 for st in pipe.stats.stages)


def test_releasing_free_heap_is_safe_to_call() -> None:
    import sys

    from stockup_tui.engine.heap import release_free_heap

    assert release_free_heap() is sys.platform.startswith("linux")
    assert release_free_heap() is sys.platform.startswith("linux")  # again: still fine


def _frame(symbol: str, n: int, t0: int) -> str:
    data = [{"s": symbol, "p": 100.0 + i, "t": t0 + i, "v": 1.0, "c": None} for i in range(n)]
    return orjson.dumps({"type": "trade", "data": data}).decode()


async def test_a_flush_waits_for_min_batch_or_max_wait_and_goes_at_once_at_max_batch() -> None:
    """Size or time: a light feed sends fewer, fuller flushes; a full batch never waits."""

    def pipeline(flush_interval: str) -> Pipeline:
        bus = {"min_batch": 5, "max_batch": 20, "flush_interval": flush_interval, "max_wait": "60s"}
        s = settings(symbols=["AAPL"], windows=["1m"], source={"dedup_horizon": 0}, bus=bus)
        return Pipeline(s, NullSource(), MemoryBus(1000))  # not started: no flush by timer

    now = time.time()
    t0 = int(now * 1000)
    pipe = pipeline("1ms")
    await pipe.publisher.on_frame(_frame("AAPL", 2, t0), now)
    assert pipe.parser.pending == 2  # fewer than min_batch: it waits
    sent = pipe.bus.stats.published_messages  # the first frame's watermark
    start = time.monotonic()
    await wait_until(lambda: time.monotonic() - start > 0.002, what="flush_interval to pass")
    await pipe.publisher.on_frame(_frame("AAPL", 3, t0 + 10), now)
    assert pipe.parser.pending == 0  # min_batch, and the oldest waited flush_interval
    assert pipe.bus.stats.published_messages == sent + 1

    pipe = pipeline("60s")  # only size can flush now
    await pipe.publisher.on_frame(_frame("AAPL", 6, t0), now)
    assert pipe.parser.pending == 6  # min_batch, but not waited
    sent = pipe.bus.stats.published_messages
    await pipe.publisher.on_frame(_frame("AAPL", 14, t0 + 10), now)
    assert pipe.parser.pending == 0  # max_batch: at once
    assert pipe.bus.stats.published_messages == sent + 1 and pipe.parser.trades == 20


class _SilentFeed(NullSource):
    """A live source that never sends a frame (the test hands them to the pipeline)."""

    async def run(self, on_frame: object, pacer: object = None) -> None:
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def _started_silent(**bus: object) -> AsyncIterator[Pipeline]:
    """A started pipeline whose frames the test hands over, with no watermark due (one would
    flush on its own) and the flush settings given."""
    s = settings(symbols=["AAPL"], windows=["1m"], bus=bus)
    pipe = Pipeline(s, _SilentFeed(), MemoryBus(1000))
    pipe.publisher.wm_due = float("inf")
    await pipe.start()
    try:
        yield pipe
    finally:
        await pipe.stop()


async def test_a_light_feed_is_flushed_after_max_wait() -> None:
    async with _started_silent(min_batch=1000, flush_interval="1ms", max_wait="200ms") as pipe:
        now = time.time()
        await pipe.publisher.on_frame(_frame("AAPL", 3, int(now * 1000)), now)
        sent = time.monotonic()
        await wait_until(lambda: pipe.analyzer.ingested == 3, what="the 3 trades analyzed")
        assert time.monotonic() - sent >= 0.2 - 0.01  # not before max_wait (timer slack)


async def test_a_burst_of_min_batch_goes_after_flush_interval_not_max_wait() -> None:
    async with _started_silent(min_batch=5, flush_interval="50ms", max_wait="60s") as pipe:
        now = time.time()
        await pipe.publisher.on_frame(_frame("AAPL", 5, int(now * 1000)), now)
        assert pipe.parser.pending == 5  # min_batch, not waited yet: the flusher's
        await wait_until(lambda: pipe.analyzer.ingested == 5, timeout=20, what="the burst")


def _rest(pipe: Pipeline, due: float) -> None:
    """`read_rest` is the time left until `due` (monotonic), as of some moment of the call."""
    before = time.monotonic()
    rest = pipe.publisher.read_rest()
    after = time.monotonic()
    assert due - after - 1e-9 <= rest <= due - before + 1e-9, (rest, due - after, due - before)


def test_the_socket_rests_until_the_pending_trades_are_due() -> None:
    """What arrives during a rest would have waited for the same flush in the parser."""
    s = settings(bus={"min_batch": 300, "flush_interval": "20ms", "max_wait": "100ms"})
    pipe = Pipeline(s, NullSource(), MemoryBus(1000))
    pub = pipe.publisher
    pub._rate_from = float("inf")  # the rate is the test's
    assert pub.read_rest() == 0.0  # nothing pending: the next frame starts the wait
    start = time.monotonic()
    pub.pending_since, pipe.parser.pending = start, 30
    assert pub.read_rest() == 0.0  # the rate not known yet: a fast feed is never held
    due = start + 0.1 - READ_AHEAD_S  # read just before the flush, to leave with it
    pub.rate = 3000.0
    before = time.monotonic()
    rest = pub.read_rest()
    assert 0.09 - (time.monotonic() - before) <= rest <= 0.09 + 1e-9  # 270 more at 3,000/s
    pub.rate = 1000.0
    _rest(pipe, due)  # slower than max_wait allows: max_wait bounds it
    pub.rate = 1e6
    assert pub.read_rest() < 0.001  # a fast feed: min_batch is a moment away
    pipe.parser.pending = 300
    assert pub.read_rest() == 0.0  # min_batch pending: the flush is near


async def test_trades_read_after_a_rest_are_due_by_their_receive_time_and_leave_together() -> None:
    """The oldest pending trade's wait counts from its receive time (on a live feed, the start
    of the rest it waited through in the kernel); frames already due leave in one flush."""
    async with _started_silent(min_batch=1000, flush_interval="1ms", max_wait="1s") as pipe:
        pub = pipe.publisher
        now = time.time()
        await pub.on_frame(_frame("AAPL", 2, int(now * 1000)), now - 0.25)
        assert 0.25 <= time.monotonic() - pub.pending_since < 0.5  # waited 250 ms already
        await wait_until(lambda: pipe.analyzer.ingested == 2, what="the first frame")
        flushes = pipe.bus.stats.published_messages
        stamp = time.time() - 1.5  # a rest longer than max_wait: due at once
        for i in range(3):
            await pub.on_frame(_frame("AAPL", 2, int(now * 1000) + 10 + 2 * i), stamp)
        read = time.monotonic()
        await wait_until(lambda: pipe.analyzer.ingested == 8, what="the three late frames")
        assert time.monotonic() - read < 0.5  # not after another max_wait
        assert pipe.bus.stats.published_messages == flushes + 1  # one flush for the read


async def test_a_frame_received_well_before_it_was_read_wakes_the_flusher_sooner() -> None:
    """A flush in the middle of a rest (the emit boundary's) leaves the flusher asleep for a
    whole max_wait; the trades read when the rest ends are due sooner, counted from the rest."""
    async with _started_silent(min_batch=1000, flush_interval="1ms", max_wait="2s") as pipe:
        pub = pipe.publisher
        await wait_until(lambda: pub._sleeps_until < float("inf"), what="the flusher asleep")
        now = time.time()
        read = time.monotonic()
        await pub.on_frame(_frame("AAPL", 2, int(now * 1000)), now - 1.8)  # due in 0.2 s
        await wait_until(lambda: pipe.analyzer.ingested == 2, what="the frame")
        assert time.monotonic() - read < 1.0  # not when the flusher meant to wake (2 s)


async def test_the_rate_a_rest_expects_is_measured_over_a_tenth_of_a_second_or_more() -> None:
    s = settings(symbols=["AAPL"], source={"dedup_horizon": 0})
    pipe = Pipeline(s, NullSource(), MemoryBus(1000))
    pub = pipe.publisher
    now = time.time()
    since = time.monotonic() - 0.2
    pub._rate_from, pub._rate_trades = since, 0
    pipe.parser.parse(_frame("AAPL", 30, int(now * 1000)), now)
    pub.read_rest()
    assert 30 / (time.monotonic() - since) <= pub.rate <= 30 / 0.2  # 30 over 200 ms or so
    pipe.parser.parse(_frame("AAPL", 30, int(now * 1000) + 100), now)
    pub.read_rest()  # too soon after the last measure: the rate stays
    assert pub.rate <= 30 / 0.2


def test_flush_rules_that_overlap_are_read_as_the_tighter_one() -> None:
    """min_batch above max_batch is max_batch; max_wait below flush_interval is flush_interval."""
    s = settings(bus={"max_batch": 8, "flush_interval": "1s", "max_wait": "100ms"})
    pipe = Pipeline(s, NullSource(), MemoryBus(1000))
    pipe.publisher.pending_since = 50.0
    pipe.parser.pending = 8
    assert pipe.publisher.flush_due() == 51.0  # max_batch pending: due after flush_interval
    pipe.parser.pending = 3
    assert pipe.publisher.flush_due() == 51.0  # fewer: after max(max_wait, flush_interval)
