"""Tests of the market simulator over real sockets with a real websocket client.

Waits are conditions with timeouts, never sleeps standing in for synchronisation; the only timed
windows are the ones a test measures (rate, ping cadence, silence).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError
from websockets.protocol import State

from stockup_tui.engine.simulator import (
    MALFORMED_KINDS,
    TOO_MANY_SYMBOLS,
    Market,
    MarketSimulator,
    SimulatorSettings,
    SimulatorThread,
    Trade,
    TradeFeed,
    poisson,
)

SimFactory = Callable[..., Awaitable[MarketSimulator]]
Message = dict[str, Any]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start simulators with the given settings and stop them all after the test."""
    sims: list[MarketSimulator] = []

    async def factory(**kwargs: Any) -> MarketSimulator:
        kwargs.setdefault("seed", 7)
        sim = MarketSimulator(SimulatorSettings(**kwargs))
        await sim.start()
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        await sim.stop()


async def send(ws: ClientConnection, kind: str, symbol: str) -> None:
    await ws.send(json.dumps({"type": kind, "symbol": symbol}))


async def recv(ws: ClientConnection, timeout: float = 2.0) -> Message:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def recv_until(
    ws: ClientConnection, done: Callable[[Message], bool], timeout: float = 3.0
) -> list[Message]:
    """Receive messages until `done(msg)` is true; return all of them, the last included."""
    out: list[Message] = []

    async def loop() -> None:
        while True:
            msg = json.loads(await ws.recv())
            out.append(msg)
            if done(msg):
                return

    await asyncio.wait_for(loop(), timeout)
    return out


def trades_of(messages: list[Message]) -> list[Message]:
    return [tr for m in messages if m["type"] == "trade" for tr in m["data"]]


def on_grid(price: float) -> bool:
    return price > 0 and round(price, 2 if price >= 1 else 4) == price


async def wait_for_condition(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


# -- protocol ------------------------------------------------------------------------------


async def test_trades_only_for_subscribed_symbols_with_wire_types(make_sim: SimFactory) -> None:
    sim = await make_sim(rate=3000, duplicate_fraction=0.0)
    async with connect(sim.url) as ws:
        await send(ws, "subscribe", "AAPL")
        await send(ws, "subscribe", "BINANCE:BTCUSDT")
        seen: set[str] = set()

        def enough(msg: Message) -> bool:
            seen.update(tr["s"] for tr in msg.get("data", ()))
            return len(seen) == 2 and msg["type"] == "trade"

        messages = await recv_until(ws, enough)
        messages += await recv_until(ws, lambda m: m["type"] == "trade")
    trades = trades_of(messages)
    assert len(trades) > 20
    assert {tr["s"] for tr in trades} == {"AAPL", "BINANCE:BTCUSDT"}
    last_t: dict[str, int] = {}
    for tr in trades:
        assert set(tr) == {"s", "p", "t", "v", "c"}
        assert type(tr["p"]) is float and on_grid(tr["p"])
        assert type(tr["t"]) is int and tr["t"] >= last_t.get(tr["s"], 0)
        last_t[tr["s"]] = tr["t"]
        if tr["s"] == "AAPL":
            assert type(tr["v"]) is int and tr["v"] > 0
        else:
            assert type(tr["v"]) is float and tr["v"] > 0
        assert tr["c"] is None or all(type(code) is str for code in tr["c"])
    assert sim.subscriptions() == {"AAPL", "BINANCE:BTCUSDT"}


async def test_unsubscribe_stops_symbol(make_sim: SimFactory) -> None:
    sim = await make_sim(rate=2000, duplicate_fraction=0.5)
    async with connect(sim.url) as ws:
        await send(ws, "subscribe", "AAPL")
        await send(ws, "subscribe", "MSFT")
        await recv_until(ws, lambda m: any(tr["s"] == "AAPL" for tr in m.get("data", ())))
        await send(ws, "unsubscribe", "AAPL")
        await send(ws, "subscribe", "TSLA")  # marker: frames with TSLA come after the unsubscribe
        await recv_until(ws, lambda m: any(tr["s"] == "TSLA" for tr in m.get("data", ())))
        later: list[Message] = []
        for _ in range(20):
            later += await recv_until(ws, lambda m: m["type"] == "trade")
    symbols = {tr["s"] for tr in trades_of(later)}
    assert "AAPL" not in symbols
    assert symbols == {"MSFT", "TSLA"}
    assert sim.subscriptions() == {"MSFT", "TSLA"}


async def test_symbol_limit_and_bad_client_messages(make_sim: SimFactory) -> None:
    sim = await make_sim(symbol_limit=3)
    async with connect(sim.url) as ws:
        for sym in ("A", "B", "C", "D"):
            await send(ws, "subscribe", sym)
        errors = await recv_until(ws, lambda m: m["type"] == "error")
        assert errors[-1] == {"type": "error", "msg": TOO_MANY_SYMBOLS}
        await wait_for_condition(lambda: sim.subscriptions() == {"A", "B", "C"})

        await ws.send("{not json")
        reply = await recv_until(ws, lambda m: m["type"] == "error")
        assert reply[-1]["msg"]
        await ws.send(json.dumps({"type": "hello"}))
        reply = await recv_until(ws, lambda m: m["type"] == "error")
        assert "hello" in reply[-1]["msg"]
        # The connection survived the garbage and still honours the protocol.
        await send(ws, "unsubscribe", "A")
        await send(ws, "subscribe", "D")
        await wait_for_condition(lambda: sim.subscriptions() == {"B", "C", "D"})
    assert sim.stats.errors_sent == 3


async def test_pings_at_configured_interval(make_sim: SimFactory) -> None:
    sim = await make_sim(ping_interval=0.1)
    loop = asyncio.get_running_loop()
    async with connect(sim.url) as ws:
        start = loop.time()
        stamps = []
        for _ in range(5):
            msg = await recv(ws, timeout=1.0)
            assert msg == {"type": "ping"}
            stamps.append(loop.time())
    gaps = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    assert 0.07 <= gaps[0] <= 0.25
    assert 0.08 <= (stamps[-1] - stamps[0]) / 4 <= 0.15
    assert sim.stats.pings_sent >= 5


async def test_duplicate_fraction_one_repeats_every_trade(make_sim: SimFactory) -> None:
    sim = await make_sim(rate=1500, duplicate_fraction=1.0)
    async with connect(sim.url) as ws:
        await send(ws, "subscribe", "AAPL")
        await send(ws, "subscribe", "BINANCE:ETHUSDT")
        messages: list[Message] = []
        while len(trades_of(messages)) < 600:
            messages += await recv_until(ws, lambda m: m["type"] == "trade")
    trades = trades_of(messages)
    newest = max(tr["t"] for tr in trades)
    counts = Counter(
        (tr["s"], tr["p"], tr["t"], tr["v"], tuple(tr["c"] or ()))
        for tr in trades
        if tr["t"] < newest - 100  # the last ticks' copies may still be on their way
    )
    assert len(counts) > 50
    assert all(n % 2 == 0 for n in counts.values())
    assert sim.stats.duplicates_sent > 0.9 * sim.stats.trades_sent - 200


async def test_rate_roughly_holds(make_sim: SimFactory) -> None:
    sim = await make_sim(rate=2000, duplicate_fraction=0.0, max_trades_per_frame=20)
    loop = asyncio.get_running_loop()
    async with connect(sim.url) as ws:
        for sym in ("AAPL", "MSFT", "NVDA", "BINANCE:BTCUSDT"):
            await send(ws, "subscribe", sym)
        await recv_until(ws, lambda m: m["type"] == "trade")
        start = loop.time()
        count = 0
        biggest = 0
        while loop.time() - start < 1.0:
            msg = await recv(ws)
            if msg["type"] == "trade":
                count += len(msg["data"])
                biggest = max(biggest, len(msg["data"]))
        elapsed = loop.time() - start
    assert 0.7 * 2000 <= count / elapsed <= 1.3 * 2000
    assert biggest <= 20


# -- faults --------------------------------------------------------------------------------


async def test_drop_every_aborts_without_close_frame(make_sim: SimFactory) -> None:
    sim = await make_sim(drop_every=0.3, rate=500)
    async with connect(sim.url) as ws:
        await send(ws, "subscribe", "AAPL")
        with pytest.raises(ConnectionClosedError) as info:
            await recv_until(ws, lambda m: False, timeout=3.0)
        assert info.value.rcvd is None  # no close frame: a network drop, not a goodbye
    await wait_for_condition(lambda: sim.stats.connections_open == 0)
    assert sim.stats.connections_total == 1


async def test_drop_connections_now(make_sim: SimFactory) -> None:
    sim = await make_sim(rate=500)
    async with connect(sim.url) as ws1, connect(sim.url) as ws2:
        await wait_for_condition(lambda: sim.stats.connections_open == 2)
        sim.drop_connections()
        for ws in (ws1, ws2):
            with pytest.raises(ConnectionClosedError):
                await recv_until(ws, lambda m: False, timeout=2.0)
    await wait_for_condition(lambda: sim.stats.connections_open == 0)


async def assert_silent(ws: ClientConnection, quiet: float) -> None:
    """Drain messages already in flight, then require `quiet` seconds without any frame."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while True:
        try:
            await asyncio.wait_for(ws.recv(), quiet)
        except TimeoutError:
            break
        assert loop.time() < deadline, "never went silent"
    assert ws.state is State.OPEN
    pong = await ws.ping()
    await asyncio.wait_for(pong, 1.0)  # the socket is alive, just mute


async def test_stall_after_goes_silent_but_stays_open(make_sim: SimFactory) -> None:
    sim = await make_sim(stall_after=0.3, ping_interval=0.05, rate=1000)
    async with connect(sim.url) as ws:
        await send(ws, "subscribe", "AAPL")
        before = await recv_until(ws, lambda m: m["type"] == "trade")
        assert before
        await assert_silent(ws, quiet=0.4)
    assert sim.stats.connections_total == 1


async def test_stall_toggle_silences_and_resumes(make_sim: SimFactory) -> None:
    sim = await make_sim(ping_interval=0.05, rate=1000)
    async with connect(sim.url) as ws:
        await send(ws, "subscribe", "AAPL")
        await recv_until(ws, lambda m: m["type"] == "trade")
        sim.stall(True)
        await assert_silent(ws, quiet=0.3)
        sim.stall(False)
        resumed = await recv_until(ws, lambda m: m["type"] == "trade", timeout=1.0)
    assert resumed[-1]["data"]


def classify(raw: str | bytes) -> str:
    """Name the kind of a bad frame as a client would discover it."""
    if isinstance(raw, bytes):
        return "binary"
    if len(raw) > 1 << 20:
        return "oversized"
    try:
        msg = json.loads(raw)  # Python's json accepts NaN, unlike the pipeline's parser should
    except ValueError:
        return "invalid_json"
    if msg.get("type") == "ping":
        return "ping"
    if msg.get("type") != "trade":
        return "unknown_type"
    if not isinstance(msg.get("data"), list):
        return "data_not_list"
    tr = msg["data"][0]
    if not {"s", "p", "t", "v"} <= tr.keys():
        return "missing_field"
    if isinstance(tr["p"], str):
        return "string_price"
    if math.isnan(tr["p"]):
        return "nan_price"
    if tr["p"] < 0:
        return "negative_price"
    if tr["p"] == 0:
        return "zero_price"
    if tr["v"] < 0:
        return "negative_volume"
    return "valid"


async def test_malformed_rate_one_sends_every_kind(make_sim: SimFactory) -> None:
    sim = await make_sim(malformed_rate=1.0, rate=2000)
    kinds: Counter[str] = Counter()
    async with connect(sim.url, max_size=None) as ws:
        await send(ws, "subscribe", "AAPL")

        async def collect() -> None:
            while not set(MALFORMED_KINDS) <= kinds.keys():
                kinds[classify(await ws.recv())] += 1

        await asyncio.wait_for(collect(), 3.0)
    assert kinds["valid"] == 0
    assert set(sim.stats.malformed_sent) == set(MALFORMED_KINDS)
    assert sim.stats.frames_sent == 0 and sim.stats.trades_sent == 0


# -- thread --------------------------------------------------------------------------------


async def test_simulator_thread_serves_and_stops() -> None:
    thread = SimulatorThread(SimulatorSettings(rate=1000, seed=3))
    url = thread.start()
    try:
        assert url == thread.simulator.url and url.startswith("ws://127.0.0.1:")
        async with connect(url) as ws:
            await send(ws, "subscribe", "AAPL")
            got = await recv_until(ws, lambda m: m["type"] == "trade")
        assert got[-1]["data"][0]["s"] == "AAPL"
    finally:
        await asyncio.to_thread(thread.stop)
    with pytest.raises(OSError):
        async with connect(url, open_timeout=1.0):
            pass


def test_simulator_thread_reports_bind_failure() -> None:
    first = SimulatorThread()
    url = first.start()
    try:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError):
            SimulatorThread(SimulatorSettings(port=port)).start()
    finally:
        first.stop()


# -- market model --------------------------------------------------------------------------


def run_feed(seed: int, ticks: int = 50) -> list[Trade]:
    feed = TradeFeed(Market(seed), rate=5000, duplicate_fraction=0.1, max_trades_per_frame=37)
    feed.set_symbols(["AAPL", "MSFT", "BINANCE:BTCUSDT", "BINANCE:DOGEUSDT"])
    out: list[Trade] = []
    for i in range(ticks):
        for frame in feed.tick(0.01, 1_700_000_000_000 + 10 * i).frames:
            assert len(frame) <= 37
            out += frame
    return out


def test_seed_makes_model_deterministic() -> None:
    a, b, c = run_feed(11), run_feed(11), run_feed(12)
    assert len(a) > 1000
    assert a == b
    assert a != c
    # Starting prices depend on seed and name only, not on which symbol came first.
    m1, m2 = Market(5), Market(5)
    m1.price("MSFT")
    assert m1.price("AAPL") == m2.price("AAPL")
    assert 20 <= m2.price("AAPL") <= 500
    assert m2.price("BINANCE:BTCUSDT") >= 20_000


def test_prices_stay_positive_and_on_tick_grid() -> None:
    trades = run_feed(1, ticks=200)
    assert all(on_grid(tr.p) for tr in trades)
    assert any(tr.p < 1 for tr in trades) or Market(1).price("BINANCE:DOGEUSDT") >= 1
    market = Market(2)
    # Push walks across the edges: towards zero, and upward through 1.0 with fine ticks.
    down = market.state("DOWN")
    down.units, down.steps, down.steps_ref = 5, [-3] * 256, 5
    up = market.state("UP")
    up.units, up.steps, up.steps_ref = 9_990, [7] * 256, 9_990
    rnd = bytes(range(256)) * 4
    prices = [tr.p for st in (down, up) for tr in market.walk(st, 256, 0, 10, rnd)]
    assert all(on_grid(p) for p in prices), [p for p in prices if not on_grid(p)]
    assert max(prices) >= 1.0


def test_timestamps_non_decreasing_without_duplicates() -> None:
    feed = TradeFeed(Market(4), rate=20_000)
    feed.set_symbols(["AAPL", "MSFT"])
    last = {"AAPL": 0, "MSFT": 0}
    for i in range(100):
        for frame in feed.tick(0.01, 1_700_000_000_000 + 10 * i).frames:
            for tr in frame:
                assert tr.t >= last[tr.s]
                last[tr.s] = tr.t


@pytest.mark.parametrize("lam", [0.5, 8.0, 400.0])
def test_poisson_mean(lam: float) -> None:
    market = Market(9)
    draws = [poisson(market.rng, lam) for _ in range(4000)]
    assert abs(sum(draws) / len(draws) - lam) < 0.1 * lam + 0.05
    assert min(draws) >= 0


def test_a_symbol_opens_at_the_same_price_whatever_the_seed() -> None:
    from stockup_tui.engine.simulator.market import Market

    opening = {seed: Market(seed).price("TSLA") for seed in (1, 2, 3, None)}
    assert len(set(opening.values())) == 1
    assert Market(1).price("AAPL") != Market(1).price("TSLA")  # per name, not one for all
