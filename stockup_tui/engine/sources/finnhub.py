"""Websocket client for the Finnhub trades feed (and the built-in simulator, same protocol).

Why it looks the way it does: the real feed drops connections and, worse, sometimes stalls
silently (the socket stays open, pings stop). So the client
- reconnects at once on the first failure, then with jittered exponential backoff, and
  re-subscribes every symbol of the watchlist;
- runs a watchdog that aborts a connection which has delivered no frame for `watchdog` seconds;
- records every loss with the gap (seconds without data) so the stats can show it;
- reads frames up to `frame_cap_bytes` whole (the parser drops, and counts, those over its own
  limit); a longer frame makes the library close the connection (1009): that one is counted
  (`frame_over_cap`) and the reconnect backs off as after a failed attempt, so a feed that
  keeps sending them costs a connection every few seconds at most, not a loop.
The token is only ever put in the URL that is dialled; logs and stats show the masked endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode

from stockup_tui.engine.drops import Drops
from stockup_tui.engine.resilience import Backoff
from stockup_tui.engine.sources.base import Disconnection, FrameHandler, ReadPacer, SourceStats
from stockup_tui.engine.sources.paced import PacedConnection
from stockup_tui.engine.sources.recording import FrameRecorder
from stockup_tui.untrusted import redact

log = logging.getLogger(__name__)


def _with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"token": token})))


class FinnhubClient:
    """Streams raw frames from a Finnhub-protocol websocket, forever, across failures."""

    def __init__(
        self,
        url: str,
        symbols: Iterable[str],
        *,
        token: str | None = None,
        kind: str = "finnhub",
        watchdog: float = 10.0,
        frame_cap_bytes: int = 16_777_216,
        recorder: FrameRecorder | None = None,
        drops: Drops | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 10.0,
    ) -> None:
        self._url = _with_token(url, token)
        self._symbols: list[str] = list(dict.fromkeys(symbols))
        self._watchdog = watchdog
        self._max_size = frame_cap_bytes
        self._drops = drops or Drops()
        self._recorder = recorder
        self._backoff_initial = backoff_initial
        # Failed attempts in a row wait twice `backoff_initial`, doubling up to `backoff_max`,
        # each wait drawn from the upper half of its step.
        self._backoff = Backoff(2 * backoff_initial, backoff_max, jitter=(0.5, 1.0))
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._subscribed: set[str] = set()
        self.stats = SourceStats(kind=kind, endpoint=url, subscribed=tuple(self._symbols))

    # -- control -------------------------------------------------------------------------

    def set_url(self, url: str, token: str | None = None) -> None:
        """Points the client elsewhere (used once the embedded simulator has its port)."""
        self._url = _with_token(url, token)
        self.stats.endpoint = url

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Replaces the watchlist; the live connection is re-subscribed at once."""
        self._symbols = list(dict.fromkeys(symbols))
        self.stats.subscribed = tuple(self._symbols)
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(self._sync_subscriptions(ws))

    async def stop(self) -> None:
        self._stopping = True
        ws = self._ws
        if ws is not None:
            await ws.close()

    # -- main loop -----------------------------------------------------------------------

    async def run(self, on_frame: FrameHandler, pacer: ReadPacer | None = None) -> None:
        stats = self.stats
        while not self._stopping:
            streamed = False
            reason = "closed"
            try:
                async with connect(
                    self._url,
                    max_size=self._max_size,
                    open_timeout=10,
                    close_timeout=2,
                    compression="deflate",
                    create_connection=PacedConnection,
                ) as ws:
                    assert isinstance(ws, PacedConnection)
                    ws.pacer = pacer
                    self._ws = ws
                    self._subscribed = set()
                    stats.connected = True
                    stats.connections += 1
                    await self._sync_subscriptions(ws)
                    streamed, reason = await self._stream(ws, on_frame)
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                # The exception may quote the dialled URL, token and all.
                reason = redact(f"connect failed: {type(exc).__name__}: {exc}")
                stats.last_error = reason
            except ConnectionClosed as exc:
                reason = redact(f"closed: {exc}")
            finally:
                self._ws = None
                if stats.connected:
                    stats.connected = False
                    if not self._stopping:
                        stats.reconnects += 1  # an established connection was lost
            if self._stopping:
                break
            self._note_loss(reason)
            if streamed:  # a connection that delivered was lost: again at once, jittered
                self._backoff.reset()
                await asyncio.sleep(random.uniform(0, self._backoff_initial))
            else:
                await asyncio.sleep(self._backoff.next())

    async def _stream(self, ws: PacedConnection, on_frame: FrameHandler) -> tuple[bool, str]:
        """Reads frames until the connection ends; returns (delivered any frame, why it ended).

        A frame's receive time is the earliest its data can have arrived (see `paced.py`)."""
        stats = self.stats
        recorder = self._recorder
        watchdog = asyncio.get_running_loop().create_task(self._watch(ws))
        streamed = False
        reason = "closed by server"
        try:
            async for frame in ws:
                now = ws.read_at
                if not streamed:
                    streamed = True
                    self._close_gap(now)
                stats.frames += 1
                stats.bytes += len(frame)
                stats.last_frame_at = now
                if recorder is not None:
                    recorder.write(frame, now)
                await on_frame(frame, now)
        except ConnectionClosed as exc:
            reason = f"closed: {exc}"
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                # Not a healthy connection however much it delivered: back off.
                self._drops.add("frame_over_cap", detail=f"over {self._max_size:,} bytes")
                streamed = False
        finally:
            watchdog.cancel()
        if watchdog.done() and not watchdog.cancelled() and watchdog.result():
            reason = f"watchdog: no frame for {self._watchdog:g}s"
        return streamed, reason

    async def _watch(self, ws: ClientConnection) -> bool:
        """Aborts the connection when no frame came for `watchdog` seconds (silent stall)."""
        started = time.time()
        while True:
            last = self.stats.last_frame_at or started
            idle = time.time() - max(last, started)
            if idle >= self._watchdog:
                log.warning("no frame for %.1fs: treating the connection as dead", idle)
                ws.transport.abort()
                return True
            await asyncio.sleep(min(1.0, self._watchdog - idle + 0.01))

    async def _sync_subscriptions(self, ws: ClientConnection) -> None:
        want = set(self._symbols)
        try:
            for sym in self._symbols:
                if sym not in self._subscribed:
                    await ws.send(orjson.dumps({"type": "subscribe", "symbol": sym}).decode())
                    self._subscribed.add(sym)
            for sym in sorted(self._subscribed - want):
                await ws.send(orjson.dumps({"type": "unsubscribe", "symbol": sym}).decode())
                self._subscribed.discard(sym)
        except ConnectionClosed:
            pass  # the read loop notices and reconnects; the next connection subscribes all

    # -- bookkeeping ---------------------------------------------------------------------

    def _note_loss(self, reason: str) -> None:
        stats = self.stats
        at = stats.last_frame_at or time.time()
        pending = stats.disconnections and stats.disconnections[-1].gap is None
        if not pending:
            stats.disconnections.append(Disconnection(at=at, reason=reason))
            log.warning("feed lost (%s); reconnecting to %s", reason, stats.endpoint)

    def _close_gap(self, now: float) -> None:
        d = self.stats.disconnections
        if d and d[-1].gap is None:
            gap = now - d[-1].at
            d[-1] = Disconnection(at=d[-1].at, reason=d[-1].reason, gap=gap)
            log.info("feed back after a %.3fs gap", gap)
