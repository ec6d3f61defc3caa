"""The RabbitMQ publisher: asynchronous confirms, a bounded resend buffer, order kept.

Every message handed to `publish` goes into the unconfirmed buffer and, when the link is up, is
written at once with `basic_publish` (no wait: pika writes on the loop). The broker confirms in
bulk (`Basic.Ack` with `multiple`); confirmed messages leave the buffer. When the connection is
lost, everything unconfirmed is written again, in its original order, on the next connection:
nothing confirmed is lost, and a batch that did reach the broker before the loss arrives twice
with the same batch id, which the analyzer skips (`bus_duplicate`). Past `bus.buffer_bytes` of
unconfirmed payload, new messages are dropped and counted as `bus_buffer_full`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.spec import Basic

from stockup_tui.config import RabbitMQConfig
from stockup_tui.engine.bus.base import Message
from stockup_tui.engine.bus.rabbitmq.amqp import Channel, Link, LinkLost, declare_topology
from stockup_tui.engine.codec import CodecError, decode_record
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.latency import LatencyHistogram
from stockup_tui.engine.model import SymbolBatch

log = logging.getLogger("stockup_tui.engine.bus.rabbitmq.bus")

MARKER_HEADER = "x-stockup-marker"  # end-of-publishing marker (role all drains up to it)
MARKER_KEY = "_stockup.marker"


class _Entry:
    __slots__ = ("headers", "key", "payload", "sent_at", "tag", "trades")

    def __init__(self, key: str, payload: bytes, trades: int, headers: Any = None) -> None:
        self.key = key
        self.payload = payload
        self.trades = trades
        self.headers = headers
        self.tag = 0
        self.sent_at = 0.0


class Publisher(Link):
    def __init__(
        self,
        cfg: RabbitMQConfig,
        params: pika.ConnectionParameters,
        drops: Drops,
        buffer_bytes: int,
    ) -> None:
        super().__init__("publisher", cfg, params)
        self.drops = drops
        self.buffer_cap = buffer_bytes
        self.buffered_bytes = 0
        self._unsent: deque[_Entry] = deque()
        self._inflight: deque[_Entry] = deque()  # written on the current channel, in tag order
        self._acked_out_of_order: set[int] = set()
        self._ch: Channel | None = None
        self._gen = 0
        self._next_tag = 0
        self._blocked = False
        self._props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        self._idle = asyncio.Event()
        self._idle.set()
        # figures
        self.accepted = 0
        self.confirmed = 0
        self.confirmed_bytes = 0
        self.confirmed_trades = 0
        self.republished = 0
        self.nacked = 0
        self.returned = 0
        self.dropped = 0
        self.full_error: str | None = None
        self.latency = LatencyHistogram()  # confirm latency since the last stats tick
        self.blocked_reason: str | None = None

    # -- link ------------------------------------------------------------------------------

    async def _setup(self, conn: AsyncioConnection, lost: asyncio.Future[Any]) -> None:
        await declare_topology(conn, self.cfg, lost)
        ch = await Channel.open(conn, lost)
        self._gen += 1
        gen = self._gen
        await ch.call(ch.ch.confirm_delivery, ack_nack_callback=partial(self._on_confirm, gen))
        ch.ch.add_on_return_callback(partial(self._on_return, gen))
        ch.closed.add_done_callback(partial(self._on_channel_closed, gen))
        conn.add_on_connection_blocked_callback(partial(self._on_blocked, gen, True))
        conn.add_on_connection_unblocked_callback(partial(self._on_blocked, gen, False))
        self._next_tag = 0
        self._acked_out_of_order.clear()
        self._blocked = False
        self.blocked_reason = None
        self._ch = ch
        if self._unsent:
            log.info(
                "RabbitMQ publisher: writing %d unconfirmed message(s), in order",
                len(self._unsent),
            )
        self._pump()

    def _teardown(self) -> None:
        self._ch = None
        self._gen += 1  # late callbacks of the old channel are ignored
        if self._inflight:
            # Unconfirmed: write them again first, in their order, on the next channel.
            self.republished += len(self._inflight)
            self._inflight.reverse()
            self._unsent.extendleft(self._inflight)
            self._inflight.clear()

    # -- publishing ------------------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> None:
        cap = self.buffer_cap
        unsent = self._unsent
        accepted = 0
        for m in messages:
            size = len(m.payload)
            if self.buffered_bytes + size > cap:
                self.dropped += 1
                self.drops.add("bus_buffer_full", max(m.trades, 1))
                self.full_error = (
                    f"unconfirmed buffer full ({self.buffered_bytes:,} of {cap:,} bytes, "
                    "bus.buffer_bytes): new trades are dropped until RabbitMQ confirms"
                )
                continue
            self.buffered_bytes += size
            unsent.append(_Entry(m.key.decode("utf-8", "replace"), m.payload, m.trades))
            accepted += 1
        if accepted:
            self.accepted += accepted
            self._idle.clear()
            self._pump()

    def publish_marker(self, marker: str) -> None:
        """An empty message naming this process: its consumer drains up to it at close."""
        self._unsent.append(_Entry(MARKER_KEY, b"", 0, {MARKER_HEADER: marker}))
        self._idle.clear()
        self._pump()

    def _pump(self) -> None:
        """Writes everything not yet written on the current channel, in order."""
        ch = self._ch
        if ch is None or self._blocked or not self._unsent:
            return
        publish = ch.ch.basic_publish
        exchange = self.cfg.exchange
        props = self._props
        unsent, inflight = self._unsent, self._inflight
        tag = self._next_tag
        now = time.monotonic()
        try:
            while unsent:
                e = unsent[0]
                p = props if e.headers is None else pika.BasicProperties(headers=e.headers)
                publish(exchange, e.key, e.payload, p, mandatory=True)
                unsent.popleft()
                tag += 1
                e.tag = tag
                e.sent_at = now
                inflight.append(e)
        except Exception as exc:  # the channel died under us: resend after the reconnect
            self.fail(exc)
        finally:
            self._next_tag = tag

    # -- broker callbacks ------------------------------------------------------------------

    def _on_channel_closed(self, gen: int, closed: asyncio.Future[BaseException | None]) -> None:
        if gen == self._gen:
            self.fail(closed.result())

    def _on_confirm(self, gen: int, frame: Any) -> None:
        if gen != self._gen:
            return
        method = frame.method
        tag = method.delivery_tag
        if isinstance(method, Basic.Nack):
            self.nacked += 1
            log.warning(
                "RabbitMQ publisher: the broker refused message(s) up to tag %d (nack); "
                "reconnecting to write every unconfirmed message again",
                tag,
            )
            self.fail(LinkLost("RabbitMQ refused a published message (nack); writing it again"))
            return
        inflight = self._inflight
        done: list[_Entry] = []
        if method.multiple:
            while inflight and inflight[0].tag <= tag:
                done.append(inflight.popleft())
        elif inflight and inflight[0].tag == tag:
            done.append(inflight.popleft())
        else:
            self._acked_out_of_order.add(tag)
        skipped = self._acked_out_of_order
        while skipped and inflight and inflight[0].tag in skipped:
            skipped.discard(inflight[0].tag)
            done.append(inflight.popleft())
        if done:
            self._confirmed(done)

    def _confirmed(self, done: list[_Entry]) -> None:
        now = time.monotonic()
        record = self.latency.record
        nbytes = trades = markers = 0
        for e in done:
            nbytes += len(e.payload)
            trades += e.trades
            record(now - e.sent_at)
            if e.headers is not None:
                markers += 1
        self.buffered_bytes -= nbytes
        self.confirmed += len(done) - markers
        self.confirmed_trades += trades
        self.confirmed_bytes += nbytes
        if not self._inflight and not self._unsent:
            self._idle.set()
        if self.full_error is not None and self.buffered_bytes < self.buffer_cap // 2:
            self.full_error = None

    def _on_return(self, gen: int, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        """A message no queue took (the binding or queue was deleted): counted, then the link is
        re-opened, which declares the queue and binding again."""
        if gen != self._gen:
            return
        self.returned += 1
        try:
            record = decode_record(body)
        except CodecError:
            record = None
        if type(record) is list:  # a group: every symbol's trades in it
            trades = sum(len(batch) for batch in record)
        else:
            trades = len(record) if type(record) is SymbolBatch else 1
        self.drops.add(
            "bus_unroutable", max(trades, 1), detail=f"exchange {method.exchange!r} key "
            f"{method.routing_key!r}: no queue bound"
        )  # fmt: skip
        self.fail(
            LinkLost(
                f"exchange '{self.cfg.exchange}' routed a message to no queue (was queue "
                f"'{self.cfg.queue}' deleted?); declaring it again"
            )
        )

    def _on_blocked(self, gen: int, blocked: bool, _conn: Any, frame: Any) -> None:
        if gen != self._gen:
            return
        self._blocked = blocked
        if blocked:
            reason = getattr(frame.method, "reason", "") or "resource alarm"
            self.blocked_reason = f"blocked by the broker ({reason})"
            log.warning("RabbitMQ publisher: %s; buffering until it lifts", self.blocked_reason)
        else:
            self.blocked_reason = None
            log.info("RabbitMQ publisher: unblocked")
            self._pump()

    # -- draining --------------------------------------------------------------------------

    @property
    def unconfirmed(self) -> int:
        return len(self._inflight) + len(self._unsent)

    @property
    def unconfirmed_trades(self) -> int:
        return sum(e.trades for e in self._inflight) + sum(e.trades for e in self._unsent)

    async def drain(self, timeout: float) -> bool:
        """Waits until every message is confirmed; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def abandon(self) -> int:
        """Forgets what is still unconfirmed (at close, broker away); returns the trades lost."""
        entries = [*self._inflight, *self._unsent]
        self._inflight.clear()
        self._unsent.clear()
        self.buffered_bytes = 0
        self._idle.set()
        return sum(e.trades for e in entries)
