"""The websocket client against the real simulator over a real socket: reconnects, watchdog,
live subscription changes, recording and replay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.server import serve

from stockup_tui.engine.drops import Drops
from stockup_tui.engine.simulator import MarketSimulator, SimulatorSettings
from stockup_tui.engine.sources.finnhub import FinnhubClient, _with_token
from stockup_tui.engine.sources.recording import FrameRecorder, ReplaySource, read_recording
from tests.helpers import wait_until


@pytest.fixture
async def simulator() -> AsyncIterator[MarketSimulator]:
    sim = MarketSimulator(SimulatorSettings(rate=2000, seed=1, ping_interval=0.2))
    await sim.start()
    yield sim
    await sim.stop()


class Collector:
    def __init__(self) -> None:
        self.frames: list[tuple[str | bytes, float]] = []
        self.symbols: set[str] = set()

    async def __call__(self, frame: str | bytes, recv: float) -> None:
        self.frames.append((frame, recv))
        if isinstance(frame, str) and frame.startswith('{"type":"trade"'):
            self.symbols.update(t["s"] for t in orjson.loads(frame)["data"])


async def start_client(client: FinnhubClient, sink: Collector) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(client.run(sink))


async def test_streams_trades_for_the_watchlist(simulator: MarketSimulator) -> None:
    client = FinnhubClient(simulator.url, ["AAPL", "MSFT"], kind="simulator")
    sink = Collector()
    task = await start_client(client, sink)
    try:
        await wait_until(lambda: {"AAPL", "MSFT"} <= sink.symbols, what="trades of both symbols")
        assert client.stats.connected and client.stats.connections == 1
        assert sink.symbols == {"AAPL", "MSFT"}
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_dropped_connection_is_back_within_one_second(simulator: MarketSimulator) -> None:
    client = FinnhubClient(simulator.url, ["AAPL"], kind="simulator")
    sink = Collector()
    task = await start_client(client, sink)
    try:
        await wait_until(lambda: len(sink.frames) > 5, what="first frames")
        for round_ in range(3):
            simulator.drop_connections()
            await wait_until(
                lambda r=round_: (
                    client.stats.reconnects == r + 1
                    and len(client.stats.disconnections) == r + 1
                    and client.stats.disconnections[-1].gap is not None
                ),
                what="reconnect with a measured gap",
            )
            gap = client.stats.disconnections[-1].gap
            assert gap is not None and gap < 1.0, f"gap {gap:.3f}s"
        assert simulator.subscriptions() == {"AAPL"}  # re-subscribed after every reconnect
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_watchdog_reconnects_a_silent_connection(simulator: MarketSimulator) -> None:
    client = FinnhubClient(simulator.url, ["AAPL"], kind="simulator", watchdog=0.5)
    sink = Collector()
    task = await start_client(client, sink)
    try:
        await wait_until(lambda: len(sink.frames) > 3, what="first frames")
        simulator.stall(True)
        await wait_until(
            lambda: len(client.stats.disconnections) == 1, timeout=5, what="watchdog to fire"
        )
        assert "watchdog" in client.stats.disconnections[0].reason
        simulator.stall(False)
        await wait_until(lambda: client.stats.last_gap is not None, what="streaming again")
        assert client.stats.reconnects >= 1
    finally:
        simulator.stall(False)
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_symbol_changes_reach_the_server_live(simulator: MarketSimulator) -> None:
    client = FinnhubClient(simulator.url, ["AAPL"], kind="simulator")
    sink = Collector()
    task = await start_client(client, sink)
    try:
        await wait_until(lambda: simulator.subscriptions() == {"AAPL"}, what="subscription")
        client.set_symbols(["MSFT", "TSLA"])
        await wait_until(lambda: simulator.subscriptions() == {"MSFT", "TSLA"}, what="change")
        sink.symbols.clear()
        await wait_until(lambda: {"MSFT", "TSLA"} <= sink.symbols, what="new symbols streaming")
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_unreachable_server_keeps_retrying_and_says_why() -> None:
    client = FinnhubClient("ws://127.0.0.1:9", ["AAPL"], backoff_initial=0.01, backoff_max=0.05)
    task = asyncio.get_running_loop().create_task(client.run(Collector()))
    try:
        await wait_until(lambda: client.stats.last_error is not None, what="an error")
        assert "connect failed" in (client.stats.last_error or "")
        assert not task.done()  # still trying
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


async def test_frames_up_to_the_cap_are_read_and_beyond_it_the_reconnects_back_off() -> None:
    """Below the cap a big frame is delivered (the parser drops it, counted); beyond it the
    connection closes, the frame is counted, and each reconnect waits longer than the last
    until `backoff_max`, however much each connection delivered first."""
    cap = 4096
    connected_at: list[float] = []

    async def handler(ws) -> None:
        connected_at.append(time.monotonic())
        await ws.send("x" * (cap - 100))
        await ws.send("y" * (cap + 1))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        drops = Drops()
        client = FinnhubClient(
            f"ws://127.0.0.1:{port}", ["AAPL"], frame_cap_bytes=cap, drops=drops,
            backoff_initial=0.05, backoff_max=0.4,
        )  # fmt: skip
        sink = Collector()
        task = await start_client(client, sink)
        try:
            await wait_until(lambda: len(connected_at) >= 6, what="six connections")
        finally:
            await client.stop()
            await asyncio.wait_for(task, 5)
    assert drops.get("frame_over_cap") >= 5
    assert drops.get("frame_over_cap") <= len(connected_at)
    assert {len(f) for f, _ in sink.frames} == {cap - 100}  # the one under the cap, each time
    gaps = [b - a for a, b in pairwise(connected_at)]
    assert min(gaps[3:]) >= 0.4 / 2  # backoff from the 4th attempt on: uniform(cap/2, cap)


def test_token_goes_only_into_the_dialled_url() -> None:
    url = _with_token("wss://ws.finnhub.io", "secret123")
    assert url == "wss://ws.finnhub.io?token=secret123"
    client = FinnhubClient("wss://ws.finnhub.io", ["AAPL"], token="secret123")
    assert "secret123" not in client.stats.endpoint


async def test_record_then_replay_gives_the_same_frames(
    simulator: MarketSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = FrameRecorder(path)
    client = FinnhubClient(simulator.url, ["AAPL", "MSFT"], kind="simulator", recorder=recorder)
    sink = Collector()
    task = await start_client(client, sink)
    await wait_until(lambda: len(sink.frames) >= 20, what="20 frames")
    await client.stop()
    await asyncio.wait_for(task, 5)
    recorder.close()

    recorded = list(read_recording(path))
    assert [f for _, f in recorded] == [f for f, _ in sink.frames]
    assert [r for r, _ in recorded] == [r for _, r in sink.frames]

    replayed = Collector()
    replay = ReplaySource(path)
    await replay.run(replayed)
    assert [f for f, _ in replayed.frames] == [f for f, _ in sink.frames]
    assert replay.stats.finished


async def test_replay_at_recorded_speed_keeps_the_pacing(tmp_path: Path) -> None:
    path = tmp_path / "paced.jsonl"
    rec = FrameRecorder(path)
    for i in range(5):
        rec.write('{"type":"ping"}', 1000.0 + i * 0.1)
    rec.write(b"\x00\x01", 1000.5)
    rec.close()
    sink = Collector()
    started = time.monotonic()
    await ReplaySource(path, speed=1.0).run(sink)
    elapsed = time.monotonic() - started
    assert len(sink.frames) == 6 and sink.frames[-1][0] == b"\x00\x01"
    assert elapsed >= 0.45  # paced: 0.5 s of recorded time (as fast as possible takes ~0)


def test_the_longest_gap_includes_an_outage_still_going_on() -> None:
    from stockup_tui.engine.sources.base import Disconnection, SourceStats

    stats = SourceStats(kind="finnhub")
    now = time.time()
    stats.disconnections.append(Disconnection(at=now - 100, reason="closed", gap=2.0))
    assert stats.max_gap == 2.0
    stats.disconnections.append(Disconnection(at=now - 30, reason="closed"))  # still down
    assert 29 < stats.max_gap < 40
