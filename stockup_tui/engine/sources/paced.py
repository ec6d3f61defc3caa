"""A websocket connection that lets its socket rest between reads.

At a live pace the feed sends a frame every 10 ms or so, and every read is a wake-up of the event
loop (0.1-0.25 ms of CPU on this kind of machine): the wake-ups, not the trades, were most of
the event loop of a process reading 3,000 trades a second. The trades read wait for a flush
anyway (size or time, see `stages/publish.py`), so reading them before the flush can go buys
nothing: after each read the connection asks a pacer how long the socket may rest, and stops
reading until then (the kernel keeps what arrives meanwhile, and the library's own flow control
still holds the socket when the frames read are not taken).

The frames of a read that followed a rest are stamped with the time the rest began: the earliest
they can have arrived. A latency measured from that stamp is never shorter than the real one.
When nothing came during a rest, what comes next is stamped when it is read.
"""

from __future__ import annotations

import asyncio
import select
import time
from typing import Any

from websockets.asyncio.client import ClientConnection

from stockup_tui.engine.sources.base import ReadPacer

#: A rest shorter than this is not worth its timer (a wake-up of its own).
MIN_REST = 0.002


class PacedConnection(ClientConnection):
    """A client connection whose reads follow a `ReadPacer` (none: every read as data comes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer: ReadPacer | None = None
        # Wall clock: the earliest the data of the latest read can have arrived.
        self.read_at = time.time()
        self.rests = 0  # rests taken: how much it paces
        self._rest_from: float | None = None  # wall clock when the socket was last put to rest
        self._rest_end: asyncio.TimerHandle | None = None
        self._asking = False  # the pacer is asked once per turn of the loop, after the reads
        self._poller: select.poll | None = None  # tells whether data came during a rest

    def data_received(self, data: bytes) -> None:
        rest_from, self._rest_from = self._rest_from, None
        self.read_at = time.time() if rest_from is None else rest_from
        super().data_received(data)
        if self.pacer is not None and not self._asking:
            # Asked once the frames of this read are taken (the reader's task runs first: its
            # wake-up was scheduled by the read), so the pacer sees them.
            self._asking = True
            self.loop.call_soon(self._rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._rest_end is not None:
            self._rest_end.cancel()
            self._rest_end = None
        super().connection_lost(exc)

    def _rest(self) -> None:
        self._asking = False
        pacer, transport = self.pacer, self.transport
        if pacer is None or self._rest_end is not None:
            return
        if transport.is_closing() or not transport.is_reading():
            return  # closing, or held by the library's flow control: nothing to pace
        seconds = pacer()
        if seconds < MIN_REST:
            return
        transport.pause_reading()
        self.rests += 1
        self._rest_from = time.time()
        self._rest_end = self.loop.call_later(seconds, self._wake)

    def _wake(self) -> None:
        # The library's flow control cannot have paused the socket meanwhile: it does so only
        # on a read, and there was none.
        self._rest_end = None
        if not self._readable():
            self._rest_from = None  # nothing came during the rest: what comes is stamped then
        self.transport.resume_reading()

    def _readable(self) -> bool:
        """Data waits in the socket (True when that cannot be told)."""
        if self._poller is None:
            sock = self.transport.get_extra_info("socket")
            if sock is None:
                return True
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)
        return bool(self._poller.poll(0))
