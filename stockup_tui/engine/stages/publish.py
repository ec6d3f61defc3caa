"""Source -> bus: the receive clock, the watermarks, and flushes by size or time.

The parser groups good trades per symbol; a flush encodes them as one message per partition
(every symbol routed there, `GROUP_MAX_TRADES` at most) and hands them to the bus: at once at
`max_batch` trades, else when the oldest pending trade has waited `flush_interval` and
`min_batch` trades are pending, or has waited `max_wait`. Every flush is a request on a network
bus and every wake-up costs CPU, so a light feed sends fewer, fuller flushes.

Each time the receive clock passes a multiple of the emit interval, the trades received so far
go out, then a watermark (clock minus `source.lateness`) into every partition: the analyzer
slides quiet symbols on those records alone, so its output is a function of the log. The
receive clock is the wall clock for a live feed and the recorded times for a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from stockup_tui.config import Settings
from stockup_tui.engine.bus.base import ALL_PARTITIONS, Bus, Message
from stockup_tui.engine.codec import (
    GROUP_KEY,
    GROUP_MAX_TRADES,
    WATERMARK_KEY,
    encode_batch,
    encode_group,
    encode_watermark,
    message_key,
)
from stockup_tui.engine.model import SymbolBatch, Watermark
from stockup_tui.engine.sources.parser import FrameParser

#: The parse rate `read_rest` expects is measured over this long at least (seconds).
RATE_EVERY_S = 0.1
#: A rest ends this long before the pending trades are due out by `max_wait`, so that what
#: arrived meanwhile is read first and leaves in the same flush.
READ_AHEAD_S = 0.002


class Publisher:
    """Moves parsed trades and watermarks to the bus, in receive order."""

    def __init__(
        self, settings: Settings, parser: FrameParser, bus: Bus, *, live: bool, encode: bool = True
    ) -> None:
        self.parser = parser
        self.bus = bus
        # False for the in-process bus: its messages carry the records themselves.
        self.encode = encode
        self.cfg = settings.bus
        self.live = live  # the receive clock follows the wall clock between frames
        self._step_ms = settings.emit_interval_ms
        self._lateness_ms = round(settings.source.lateness * 1000)
        self._lock = asyncio.Lock()  # keeps per-symbol order across flushes
        # Batch ids: this process's producer id and sequence.
        self._producer_id = os.urandom(8).hex()
        self._seq = 0
        # The receive clock (epoch seconds) and when the next watermark is due on it.
        self.clock = 0.0
        self.wm_due = 0.0
        # Monotonic time the oldest pending trade arrived: its receive time on a live feed (the
        # earliest it can have arrived, a rest of the socket included), else when it was parsed.
        self.pending_since = 0.0
        # Trades parsed a second, measured over RATE_EVERY_S or more (0: not known yet): how
        # soon min_batch comes, for `read_rest`.
        self.rate = 0.0
        self._rate_from = time.monotonic()
        self._rate_trades = 0
        self._wake = asyncio.Event()  # min_batch reached: a flush is due sooner
        self._sleeps_until = float("inf")  # when the flusher wakes next (monotonic)
        self.watermarks = 0  # watermark records published

    async def on_frame(self, frame: str | bytes, recv_time: float) -> None:
        """A frame from the source: parsed, and flushed when size or time says so."""
        if recv_time >= self.wm_due:
            await self.advance_clock(recv_time)  # before this frame's trades
        parser = self.parser
        had = parser.pending
        parser.parse(frame, recv_time)
        pending = parser.pending
        if pending == had:
            return
        now = time.monotonic()
        if not had:
            age = time.time() - recv_time if self.live else 0.0
            self.pending_since = now - min(max(age, 0.0), self.cfg.longest_wait)
        cfg = self.cfg
        if pending >= cfg.max_batch:
            await self.flush()
        elif pending >= cfg.min_batch:
            if now - self.pending_since >= cfg.flush_interval:
                await self.flush()
            elif had < cfg.min_batch:
                self._wake.set()  # due at flush_interval now, not max_wait
        elif not had and self.pending_since + cfg.longest_wait < self._sleeps_until:
            # Received before it was read (a rest): due before the flusher means to wake. Woken
            # now, it flushes once this read is parsed.
            self._wake.set()

    def flush_due(self) -> float:
        """When the pending trades are due out (monotonic seconds; inf when none are)."""
        pending = self.parser.pending
        if not pending:
            return float("inf")
        cfg = self.cfg
        if pending >= min(cfg.min_batch, cfg.max_batch):
            return self.pending_since + cfg.flush_interval
        return self.pending_since + cfg.longest_wait

    def read_rest(self) -> float:
        """How long the source may leave its socket unread now (seconds; 0: read as data comes).

        Below `min_batch`, until it is expected at the recent rate, and never past `max_wait`
        after the oldest pending trade: what arrives meanwhile would have waited for that flush
        in the parser, so it may as well wait in the kernel (see `sources/paced.py`). No rest
        with nothing pending (the next frame starts the wait), with `min_batch` pending (the
        flush is near) or while the rate is not known (at start): a fast feed is never held.
        """
        parser = self.parser
        now = time.monotonic()
        if now - self._rate_from >= RATE_EVERY_S:
            self.rate = (parser.trades - self._rate_trades) / (now - self._rate_from)
            self._rate_from, self._rate_trades = now, parser.trades
        pending = parser.pending
        cfg = self.cfg
        batch = min(cfg.min_batch, cfg.max_batch)
        if not pending or pending >= batch or not self.rate:
            return 0.0
        due = self.pending_since + cfg.longest_wait - READ_AHEAD_S  # read, then the flush
        return min(due, now + (batch - pending) / self.rate) - now

    async def run(self) -> None:
        """Flushes what waited long enough, and moves the watermark on for a quiet live feed.

        Sleeps until the next thing due, at most `max_wait` (every wake-up costs CPU): trades
        arriving meanwhile are due no sooner, unless they make `min_batch` (`on_frame` wakes
        it then).
        """
        max_wait = self.cfg.longest_wait
        live = self.live
        while True:
            now = time.monotonic()
            if self.flush_due() <= now:
                await self.flush()
            wall = time.time()
            if live and wall >= self.wm_due:
                await self.advance_clock(wall)
            now = time.monotonic()
            sleep = min(max_wait, self.flush_due() - now)
            if live:
                sleep = min(sleep, self.wm_due - time.time())
            self._sleeps_until = now + sleep
            wake = self._wake
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.001, sleep))

    async def advance_clock(self, clock: float) -> None:
        """The receive clock passed a multiple of the emit interval: the trades received so far
        go out, then a watermark behind the clock by `source.lateness`."""
        if clock < self.clock:
            return  # the wall clock stepped back: the next frames catch up
        await self.flush(watermark_at=clock)
        step = self._step_ms
        self.wm_due = (int(clock * 1000) // step + 1) * step / 1000

    async def publish_watermark(self, clock: float, final: bool = False) -> None:
        """A watermark into every partition (`final`: the end of a replay closes every
        symbol's last boundary)."""
        async with self._lock:
            mark = self._watermark(clock, final)
            if mark is not None:
                await self.bus.publish([mark])
                self.watermarks += 1

    def _watermark(self, clock: float, final: bool = False) -> Message | None:
        """The watermark message for receive clock `clock` (None before the lateness)."""
        self.clock = max(self.clock, clock)
        wm = int(self.clock * 1000) - self._lateness_ms
        if wm <= 0:
            return None
        mark = Watermark(wm, final)
        if self.encode:
            return Message(WATERMARK_KEY, encode_watermark(mark), 0, ALL_PARTITIONS)
        return Message(WATERMARK_KEY, b"", 0, ALL_PARTITIONS, record=mark)

    async def flush(self, watermark_at: float | None = None) -> None:
        """Moves pending trades to the bus: one message per partition per flush. With
        `watermark_at`, the watermark of that receive clock follows them in the same
        publish: one request on a network bus, not two."""
        async with self._lock:
            batches = self.parser.take()
            messages = self._messages(batches) if batches else []
            mark = None if watermark_at is None else self._watermark(watermark_at)
            if mark is not None:
                messages.append(mark)
            if messages:
                await self.bus.publish(messages)
            if mark is not None:
                self.watermarks += 1

    def _messages(self, batches: list[SymbolBatch]) -> list[Message]:
        producer = self._producer_id
        seq = self._seq
        route = self.bus.route
        # Per partition: the groups of this flush, the last one still filling.
        groups: dict[int, list[list[SymbolBatch]]] = {}
        filled: dict[int, int] = {}  # trades in each partition's last group
        messages = []
        for b in batches:
            key = message_key(b)
            part = route(key)
            if part is None:  # the bus cannot tell yet: one message per symbol, keyed
                seq += 1
                b.bid = (producer, seq)
                messages.append(Message(key, encode_batch(b), len(b.t)))
                continue
            n = len(b.t)
            mine = groups.setdefault(part, [[]])
            if mine[-1] and filled[part] + n > GROUP_MAX_TRADES:
                mine.append([])
                filled[part] = 0
            mine[-1].append(b)
            filled[part] = filled.get(part, 0) + n
        encode = self.encode
        for part, mine in groups.items():
            for group in mine:
                seq += 1
                trades = sum(len(b.t) for b in group)
                if encode:
                    payload = encode_group(group, producer, seq)
                    messages.append(Message(GROUP_KEY, payload, trades, part))
                    continue
                bid = (producer, seq)
                for b in group:  # as decoding the group would give them
                    b.bid = bid
                messages.append(Message(GROUP_KEY, b"", trades, part, record=group))
        self._seq = seq
        return messages
