"""Websocket server that speaks Finnhub's trades protocol, fed by the pure model in `market.py`.

It is a real server on a real socket so that the app, the tests and the CLI exercise exactly the
code path they use against Finnhub, including the ugly parts: duplicates, pings, abrupt drops,
silent stalls and malformed frames (the fault knobs, all off by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stockup_tui.engine.resilience import LoopThread

from .market import Market, Trade, TradeFeed

log = logging.getLogger(__name__)

PING_FRAME = b'{"type":"ping"}'
_encode = msgspec.json.Encoder().encode  # trade frames: lists of `Trade` structs
TOO_MANY_SYMBOLS = "Subscribing to too many symbols"
MAX_SYMBOL_LENGTH = 64
OVERSIZED_BYTES = (1 << 20) + 4096
MALFORMED_KINDS = (
    "invalid_json",
    "string_price",
    "missing_field",
    "nan_price",
    "negative_price",
    "zero_price",
    "negative_volume",
    "unknown_type",
    "data_not_list",
    "binary",
    "oversized",
)
"""Kinds of bad frame, in the order `malformed_rate` cycles through them."""


@dataclass
class SimulatorSettings:
    """Knobs of the simulator; the fault knobs (`drop_every`, `stall_after`, `malformed_rate`)
    are off at 0."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port
    rate: float = 200.0  # total trades/s per connection
    duplicate_fraction: float = 0.02
    ping_interval: float = 5.0
    symbol_limit: int = 50
    frame_interval: float = 0.01
    max_trades_per_frame: int = 500
    drop_every: float = 0.0
    stall_after: float = 0.0
    malformed_rate: float = 0.0
    seed: int | None = None


@dataclass
class SimulatorStats:
    """Counters of what went out on the wire, so tests can compare a pipeline against the source.

    `trades_sent` counts first sends only; `duplicates_sent` counts re-sends, so the number of
    trade entries on the wire is their sum. Trades in frames replaced by a malformed frame are in
    neither.
    """

    connections_total: int = 0
    connections_open: int = 0
    trades_sent: int = 0
    duplicates_sent: int = 0
    frames_sent: int = 0
    pings_sent: int = 0
    malformed_sent: dict[str, int] = field(default_factory=dict)
    errors_sent: int = 0


class _Client:
    """Per-connection state: subscriptions, the trade feed and when it connected."""

    __slots__ = ("feed", "started", "subs", "ws")

    def __init__(self, ws: ServerConnection, feed: TradeFeed, started: float) -> None:
        self.ws = ws
        self.feed = feed
        self.started = started
        self.subs: dict[str, None] = {}  # ordered set


class MarketSimulator:
    """Finnhub-compatible trade feed on a local websocket port, one `TradeFeed` per connection."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings or SimulatorSettings()
        self.market = Market(self.settings.seed)
        self.stats = SimulatorStats()
        self.port: int | None = None
        self._rng = random.Random(self.market.seed ^ 0x5F3759DF)  # faults; keeps the model's draws
        self._clients: dict[ServerConnection, _Client] = {}
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._drop_task: asyncio.Task[None] | None = None
        self._stalled = False
        self._malformed_next = 0

    @property
    def url(self) -> str:
        """`ws://host:port` once started."""
        if self.port is None:
            raise RuntimeError("simulator not started")
        return f"ws://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        """Bind the listening socket; afterwards `port` and `url` are set."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            compression=None,  # deflate would cost more CPU than generating the trades
            max_size=2**16,  # clients only send tiny control messages
            close_timeout=2.0,
            process_request=self._rest,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.settings.drop_every > 0:
            self._drop_task = asyncio.create_task(self._drop_loop())

    def _rest(self, connection: ServerConnection, request: Request) -> Response | None:
        """Finnhub's REST `GET /api/v1/quote?symbol=X` on the same port (the previous close a
        screen shows the day's change against); websocket upgrades go on to `_handle`."""
        parts = urlsplit(request.path)
        if parts.path != "/api/v1/quote":
            return None
        symbol = parse_qs(parts.query).get("symbol", [""])[0].strip().upper()
        if not symbol or len(symbol) > 50:
            return connection.respond(400, "symbol required\n")
        market = self.market
        price, close = market.price(symbol), market.previous_close(symbol)
        body = {
            "c": price,
            "d": round(price - close, 4),
            "dp": round((price - close) / close * 100, 4),
            "pc": close,
            "t": int(time.time()),
        }
        response = connection.respond(200, orjson.dumps(body).decode())
        response.headers["Content-Type"] = "application/json"
        return response

    async def stop(self) -> None:
        """Close the server and every connection (close frame 1001), cancel background tasks."""
        if self._drop_task is not None:
            self._drop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drop_task
            self._drop_task = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until `stop()` is called or this task is cancelled."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    def subscriptions(self) -> set[str]:
        """Union of the symbols subscribed over all open connections."""
        out: set[str] = set()
        for client in list(self._clients.values()):
            out.update(list(client.subs))
        return out

    def drop_connections(self) -> None:
        """Abort every open connection now (no close frame), like a network drop.

        Safe to call from another thread: it then hops onto the simulator's loop.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not None and running is not self._loop:
            self._loop.call_soon_threadsafe(self._abort_all)
        else:
            self._abort_all()

    def stall(self, on: bool) -> None:
        """Silence (or un-silence) every connection: no trades, no pings, socket stays open."""
        self._stalled = on

    # -- internals -------------------------------------------------------------------------

    def _abort_all(self) -> None:
        for ws in list(self._clients):
            ws.transport.abort()

    async def _drop_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.drop_every)
            self._abort_all()

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        feed = TradeFeed(self.market, s.rate, s.duplicate_fraction, s.max_trades_per_frame)
        client = _Client(ws, feed, loop.time())
        self._clients[ws] = client
        self.stats.connections_total += 1
        self.stats.connections_open += 1
        producer = asyncio.create_task(self._produce(client))
        try:
            async for message in ws:
                await self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await producer
            del self._clients[ws]
            self.stats.connections_open -= 1

    def _silent(self, client: _Client, now: float) -> bool:
        after = self.settings.stall_after
        return self._stalled or (after > 0 and now - client.started >= after)

    async def _reply_error(self, client: _Client, msg: str) -> None:
        if self._silent(client, asyncio.get_running_loop().time()):
            return
        await client.ws.send(orjson.dumps({"type": "error", "msg": msg}), text=True)
        self.stats.errors_sent += 1

    async def _on_message(self, client: _Client, message: str | bytes) -> None:
        try:
            obj = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self._reply_error(client, "Invalid JSON")
            return
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._reply_error(client, f"Unknown message type: {kind}")
            return
        symbol = obj.get("symbol")
        if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > MAX_SYMBOL_LENGTH:
            await self._reply_error(client, "Invalid symbol")
            return
        subs = client.subs
        if kind == "subscribe":
            if symbol in subs:
                return
            if len(subs) >= self.settings.symbol_limit:
                await self._reply_error(client, TOO_MANY_SYMBOLS)
                return
            subs[symbol] = None
        elif symbol in subs:
            del subs[symbol]
        else:
            return  # was not subscribed: nothing to do, like Finnhub
        client.feed.set_symbols(subs)

    async def _produce(self, client: _Client) -> None:
        """Run the tick loop; a bug in it must not leave a connection open but mute."""
        try:
            await self._tick_loop(client)
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("simulator producer failed")
            await client.ws.close(1011, "simulator error")

    async def _tick_loop(self, client: _Client) -> None:
        """Tick loop of one connection: trades for the elapsed loop time, and periodic pings.

        Elapsed time is measured on the loop clock, so a late tick generates more trades and the
        rate holds under load.
        """
        s = self.settings
        ws = client.ws
        feed = client.feed
        loop = asyncio.get_running_loop()
        stats = self.stats
        ping_every = s.ping_interval if s.ping_interval > 0 else math.inf
        last = client.started
        next_ping = last + ping_every
        while True:
            await asyncio.sleep(s.frame_interval)
            now = loop.time()
            elapsed = now - last
            last = now
            if self._silent(client, now):
                feed.discard_pending()
                continue
            if now >= next_ping:
                await ws.send(PING_FRAME, text=True)
                stats.pings_sent += 1
                next_ping += ping_every
                if next_ping <= now:  # resumed after a stall: restart the cadence from now
                    next_ping = now + ping_every
            if not client.subs:
                continue
            result = feed.tick(elapsed, time.time_ns() // 1_000_000)
            dups = result.duplicates
            for frame in result.frames:
                n_dup = min(dups, len(frame))
                dups -= n_dup
                if s.malformed_rate > 0 and self._rng.random() < s.malformed_rate:
                    await self._send_malformed(ws, frame)
                    continue
                await ws.send(_encode({"type": "trade", "data": frame}), text=True)
                stats.frames_sent += 1
                stats.duplicates_sent += n_dup
                stats.trades_sent += len(frame) - n_dup

    async def _send_malformed(self, ws: ServerConnection, frame: list[Trade]) -> None:
        kind = MALFORMED_KINDS[self._malformed_next % len(MALFORMED_KINDS)]
        self._malformed_next += 1
        if kind == "binary":
            await ws.send(_encode({"type": "trade", "data": frame}))  # bytes -> binary frame
        else:
            await ws.send(self._bad_text(kind, frame[0]), text=True)
        counts = self.stats.malformed_sent
        counts[kind] = counts.get(kind, 0) + 1

    def _bad_text(self, kind: str, good: Trade) -> bytes:
        """Build the UTF-8 text of a bad frame of `kind`, based on a real trade of the frame."""
        trade = msgspec.structs.asdict(good)

        def frame(**changes: Any) -> bytes:
            bad = {**trade, **changes}
            return orjson.dumps({"type": "trade", "data": [bad]})

        sym = orjson.dumps(trade["s"]).decode()
        if kind == "invalid_json":
            return b'{"type":"trade","data":[{"s":' + sym.encode() + b',"p":1'
        if kind == "string_price":
            return frame(p=str(trade["p"]))
        if kind == "missing_field":
            bad = dict(trade)
            del bad[self._rng.choice(("p", "t", "s", "v"))]
            return orjson.dumps({"type": "trade", "data": [bad]})
        if kind == "nan_price":
            t = trade["t"]
            return f'{{"type":"trade","data":[{{"s":{sym},"p":NaN,"t":{t},"v":1}}]}}'.encode()
        if kind == "negative_price":
            return frame(p=-trade["p"])
        if kind == "zero_price":
            return frame(p=0.0)
        if kind == "negative_volume":
            return frame(v=-abs(trade["v"]) or -1)
        if kind == "unknown_type":
            return orjson.dumps({"type": "news", "data": [trade]})
        if kind == "data_not_list":
            return orjson.dumps({"type": "trade", "data": trade})
        if kind == "oversized":  # well-formed, but beyond a default 1 MiB client limit
            one = orjson.dumps(trade)
            count = OVERSIZED_BYTES // (len(one) + 1) + 1
            return b'{"type":"trade","data":[' + b",".join([one] * count) + b"]}"
        raise ValueError(f"unknown malformed kind {kind!r}")


class SimulatorThread:
    """Runs a MarketSimulator in a daemon thread with its own event loop, so the app's loop is not
    taxed by trade generation."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.simulator = MarketSimulator(settings)
        self._thread = LoopThread("market-simulator", "market simulator")

    def start(self, timeout: float = 5.0) -> str:
        """Start the thread and return the url once the socket is bound; raise if it fails."""
        try:
            self._thread.start(self.simulator.start, self.simulator.stop, timeout)
        except BaseException as exc:
            if exc is self._thread.error:
                raise RuntimeError("market simulator failed to start") from exc
            raise
        return self.simulator.url

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the simulator and join the thread (idempotent)."""
        if not self._thread.stop(timeout):
            raise TimeoutError("market simulator thread did not stop in time")


async def run_simulator(settings: SimulatorSettings | None = None) -> None:
    """Serve the simulator until SIGINT or SIGTERM (or cancelled), logging its url (entry point
    of `simulate`). The handlers also replace an inherited SIG_IGN: a shell starts `cmd &`
    with SIGINT ignored, and a simulator that Ctrl+C or `kill -INT` cannot stop is a nuisance."""
    sim = MarketSimulator(settings)
    await sim.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: loop.create_task(sim.stop()))
    log.info("market simulator listening on %s", sim.url)
    await sim.serve_forever()
