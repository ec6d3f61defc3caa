"""The RabbitMQ consumer: prefetch, manual acks after processing, stream replay on restart.

Messages arrive through pika's callback into an inbox; `deliveries()` hands them to the analyzer
in groups and `ack()` acknowledges a group with one `basic_ack(multiple=True)` once its effects
are done (at-least-once).

On a stream queue the position is ours to keep: after each ack the consumer saves the analyzer's
checkpoint (`rabbitmq/checkpoint.py`, at most every 20 ms). A restarted analyzer attaches at the
checkpoint's `replay_from`, starts the analyzer's state afresh at the checkpoint's watermark
(`Delivery.starts`) and marks every message up to the checkpointed offset `replay=True`, so the
state is rebuilt exactly before it emits anything. Before trusting a position the consumer
checks that the stream still holds the same message there (offset + CRC): a stream deleted and
declared again starts at offset 0, and a stale position would otherwise skip or silence new
data. Without a checkpoint the consumer reads the stream from its first retained message, like
a new Kafka group: a new analyzer emits the same history as any other. After a lost connection
inside one process, it attaches right after the last message it received.

Quorum and classic queues keep the position in the broker: unacknowledged messages are
delivered again after a reconnect (the analyzer skips batches it already applied), and there
is nothing to replay after a restart.

Longer than most modules on purpose: on a stream the position is ours to keep, and attaching,
checking and replaying are one state machine over pika's callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from stockup_tui.config import RabbitMQConfig
from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.base import Delivery, Message
from stockup_tui.engine.bus.rabbitmq.amqp import Channel, Link, LinkLost, declare_topology
from stockup_tui.engine.bus.rabbitmq.checkpoint import CheckpointFile, StreamCheckpoint
from stockup_tui.engine.bus.rabbitmq.publisher import MARKER_HEADER

log = logging.getLogger("stockup_tui.engine.bus.rabbitmq.bus")

OFFSET_HEADER = "x-stream-offset"
PROBE_TIMEOUT = 3.0  # waiting for the checkpointed message when checking a stream's identity
DEAD_LETTER_TIMEOUT = 5.0


class _Token:
    __slots__ = ("body", "gen", "offset", "tag")

    def __init__(self, gen: int, tag: int, offset: int | None, body: bytes) -> None:
        self.gen = gen
        self.tag = tag
        self.offset = offset
        self.body = body


class Consumer(Link):
    def __init__(
        self,
        cfg: RabbitMQConfig,
        params: pika.ConnectionParameters,
        *,
        checkpoint: CheckpointFile | None,
        marker: str,
    ) -> None:
        super().__init__("consumer", cfg, params)
        self.stream = cfg.queue_type == "stream"
        self.checkpoint = checkpoint if self.stream else None
        self.marker = marker
        self._saved: StreamCheckpoint | None = None  # the checkpoint found at start
        self._replay_until: int | None = None  # offsets <= this are replays
        self._start: dict[int, int | None] = {}  # for the next delivery (see Delivery.starts)
        self._position: int | None = None  # last stream offset received in this process
        self._position_body = b""
        self._inbox: deque[tuple[int, int, int | None, Message, bytes]] = deque()
        self._wake = asyncio.Event()
        self._ch: Channel | None = None
        self._dl: Channel | None = None
        self._dl_tag = 0
        self._dl_waiting: dict[int, asyncio.Future[bool]] = {}
        self._gen = 0
        self._closing = False
        self._await_marker = False
        self._marker_seen = False
        self._drain_deadline = 0.0
        self.consuming = False
        self.done = asyncio.Event()
        self.progress = asyncio.Event()  # set on every delivery (role all's back-pressure)
        self.max_delivery = max(1, cfg.prefetch // 2)  # half the credit stays with the broker
        # figures
        self.received = 0
        self.delivered = 0
        self.acked = 0
        self.replayed = 0
        self.dead_lettered = 0
        self.dead_letter_errors = 0
        self.dead_letter_error: str | None = None
        self.acked_offset: int | None = None
        self.queue_messages: int | None = None
        self.queue_consumers: int | None = None
        self._monitor: Channel | None = None

    def load_checkpoint(self) -> None:
        if self.checkpoint is not None:
            self._saved = self.checkpoint.load()
            if self._saved is not None:
                cp = self._saved
                log.info(
                    "RabbitMQ consumer: checkpoint %s: offset %d; replaying from offset %d "
                    "(watermark %s there)",
                    self.checkpoint.path,
                    cp.offset,
                    cp.replay_from,
                    cp.watermark_ms,
                )

    @property
    def replaying(self) -> bool:
        return self._replay_until is not None

    @property
    def backlog(self) -> int:
        """Received, not yet acknowledged (inbox + handed to the analyzer)."""
        return max(0, self.received - self.acked)

    # -- link ------------------------------------------------------------------------------

    async def _setup(self, conn: AsyncioConnection, lost: asyncio.Future[Any]) -> None:
        cfg = self.cfg
        await declare_topology(conn, cfg, lost)
        ch = await Channel.open(conn, lost)
        await ch.call(ch.ch.basic_qos, prefetch_count=cfg.prefetch)
        dl = await Channel.open(conn, lost)
        self._gen += 1
        gen = self._gen
        self._dl_tag = 0
        await dl.call(dl.ch.confirm_delivery, ack_nack_callback=partial(self._on_dl_confirm, gen))
        args: dict[str, Any] | None = None
        if self.stream:
            args = {OFFSET_HEADER: await self._attach_point(conn, lost)}
        else:
            self._inbox.clear()  # unacknowledged messages come again from the broker
        for c in (ch, dl):
            c.closed.add_done_callback(partial(self._on_channel_closed, gen))
        ch.ch.add_on_cancel_callback(partial(self._on_cancel, gen))
        self._ch, self._dl = ch, dl
        await ch.call(
            ch.ch.basic_consume,
            cfg.queue,
            partial(self._on_message, gen),
            auto_ack=False,
            arguments=args,
        )
        log.debug("RabbitMQ consumer: consuming %s from %s", cfg.queue, args)

    def _teardown(self) -> None:
        self._gen += 1
        self._ch = self._dl = self._monitor = None
        for fut in self._dl_waiting.values():
            if not fut.done():
                fut.set_result(False)
        self._dl_waiting.clear()
        self._wake.set()

    async def _attach_point(self, conn: AsyncioConnection, lost: asyncio.Future[Any]) -> Any:
        """Where to attach to the stream: after what this process already received, else from
        the checkpoint (replaying), else from the moment the bus started."""
        if self._position is not None:
            if await self._same_stream(conn, lost, self._position, zlib.crc32(self._position_body)):
                return self._position + 1
            log.warning(
                "RabbitMQ consumer: stream '%s' no longer holds offset %d that was just read "
                "(deleted and declared again?); reading it from its start",
                self.cfg.queue,
                self._position,
            )
            self._position = None
            self._replay_until = None
            self._start = {0: None}  # what the analyzer had of the old stream is void
            return "first"
        cp = self._saved
        if cp is not None:
            self._saved = None  # used once: later attaches go on from `_position`
            if await self._same_stream(conn, lost, cp.offset, cp.crc):
                self._replay_until = cp.offset
                self._start = {0: cp.watermark_ms}
                return cp.replay_from
            log.warning(
                "RabbitMQ consumer: stream '%s' does not hold the checkpointed message at offset "
                "%d (deleted and declared again?); ignoring the checkpoint and reading the stream "
                "from its start",
                self.cfg.queue,
                cp.offset,
            )
            return "first"
        return "first"  # no position: the whole retained stream, like a new Kafka group

    async def _same_stream(
        self, conn: AsyncioConnection, lost: asyncio.Future[Any], offset: int, crc: int | None
    ) -> bool:
        """True if the stream still holds our message at `offset` (or truncated it by age)."""
        probe = await Channel.open(conn, lost)
        got: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

        def on_message(_ch: Any, _method: Any, props: Any, body: bytes) -> None:
            if not got.done():
                got.set_result(((props.headers or {}).get(OFFSET_HEADER, -1), body))

        try:
            await probe.call(probe.ch.basic_qos, prefetch_count=1)
            await probe.call(
                probe.ch.basic_consume,
                self.cfg.queue,
                on_message,
                arguments={OFFSET_HEADER: offset},
            )
            done, _ = await asyncio.wait(
                {got, lost}, timeout=PROBE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if lost.done():
                reason = lost.result()
                raise reason if isinstance(reason, BaseException) else LinkLost("lost")
            if not done:
                return False  # the stream ends before `offset`: a new stream
            first, body = got.result()
        finally:
            probe.close()
        if first == offset:
            return crc is None or zlib.crc32(body) == crc
        if first > offset:
            log.warning(
                "RabbitMQ consumer: stream '%s' no longer holds offset %d (x-max-age retention); "
                "replaying what is left",
                self.cfg.queue,
                offset,
            )
            return True
        return False

    # -- receiving -------------------------------------------------------------------------

    def _on_message(self, gen: int, ch: Any, method: Any, props: Any, body: bytes) -> None:
        if gen != self._gen:
            return
        headers = props.headers
        offset = None
        if headers:
            if MARKER_HEADER in headers:  # another process's end marker, or ours
                ch.basic_ack(method.delivery_tag)
                if headers[MARKER_HEADER] == self.marker:
                    self._marker_seen = True
                    self._wake.set()
                return
            offset = headers.get(OFFSET_HEADER)
        if offset is not None:
            if self._position is not None and offset <= self._position:
                ch.basic_ack(method.delivery_tag)  # already received before a reconnect
                return
            self._position = offset
            self._position_body = body
        until = self._replay_until
        replay = until is not None and offset is not None and offset <= until
        self.received += 1
        self._inbox.append(
            (
                gen,
                method.delivery_tag,
                offset,
                Message(
                    method.routing_key.encode(),
                    body,
                    replay=replay,
                    offset=-1 if offset is None else offset,
                ),
                body,
            )
        )
        self._wake.set()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Yields groups of messages until the bus closes (and, in role all, has drained)."""
        self.consuming = True
        self.done.clear()
        inbox = self._inbox
        try:
            while True:
                if inbox:
                    gen = inbox[0][0]
                    msgs: list[Message] = []
                    last = inbox[0]
                    limit = self.max_delivery
                    while inbox and len(msgs) < limit and inbox[0][0] == gen:
                        last = inbox.popleft()
                        msgs.append(last[3])
                    self.delivered += len(msgs)
                    self.progress.set()
                    if msgs[0].replay:
                        self.replayed += sum(1 for m in msgs if m.replay)
                    starts, self._start = self._start, {}
                    yield Delivery(
                        msgs, token=_Token(gen, last[1], last[2], last[4]), starts=starts
                    )
                    continue
                if self._closing and (
                    not self._await_marker
                    or self._marker_seen
                    or time.monotonic() > self._drain_deadline
                ):
                    return
                self._wake.clear()
                if inbox:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.5 if self._closing else None)
        finally:
            self.consuming = False
            self.done.set()

    def ack(self, delivery: Delivery, checkpoint: Checkpoint | None) -> None:
        tok = delivery.token
        if not isinstance(tok, _Token):
            return
        self.acked += len(delivery.messages)
        ch = self._ch
        if tok.gen == self._gen and ch is not None and ch.is_open:
            try:
                ch.ch.basic_ack(tok.tag, multiple=True)
            except Exception as exc:  # the channel is going: the reconnect settles it
                log.debug("RabbitMQ consumer: ack failed: %s", exc)
        if tok.offset is not None and checkpoint is not None:
            self._processed(tok.offset, tok.body, checkpoint)

    def _processed(self, offset: int, body: bytes, cp: Checkpoint) -> None:
        """Moves the checkpoint on after an acknowledged stream message at `offset`."""
        until = self._replay_until
        if until is not None:
            if offset <= until:
                return  # still replaying what the checkpoint already covers
            self._replay_until = None
            log.info(
                "RabbitMQ consumer: replay done (%d messages up to offset %d); emitting again",
                self.replayed,
                until,
            )
        self.acked_offset = offset
        if self.checkpoint is not None:
            self.checkpoint.update(offset, body, cp.watermark_ms, cp.replay_from)

    # -- closing ---------------------------------------------------------------------------

    async def stop(self, timeout: float = 5.0) -> None:
        await super().stop(timeout)
        if self.checkpoint is not None:
            self.checkpoint.flush()

    def begin_close(self, await_marker: bool, timeout: float) -> None:
        self._closing = True
        self._await_marker = await_marker
        self._drain_deadline = time.monotonic() + timeout
        self._wake.set()

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letter(self, message: Message, reason: str) -> None:
        dl = self._dl
        if dl is None or not dl.is_open:
            self._dead_letter_failed("not connected")
            return
        self._dl_tag += 1
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._dl_waiting[self._dl_tag] = fut
        props = pika.BasicProperties(
            delivery_mode=2,
            timestamp=int(time.time()),
            headers={
                "x-stockup-reason": reason,
                "x-stockup-queue": self.cfg.queue,
                "x-stockup-key": message.key.decode("utf-8", "replace"),
            },
        )
        try:
            dl.ch.basic_publish(
                self.cfg.dead_letter_exchange, message.key.decode("utf-8", "replace"),
                message.payload, props,
            )  # fmt: skip
            ok = await asyncio.wait_for(asyncio.shield(fut), DEAD_LETTER_TIMEOUT)
        except Exception as exc:
            self._dl_waiting.pop(self._dl_tag, None)
            self._dead_letter_failed(f"{type(exc).__name__}: {exc}")
            return
        if ok:
            self.dead_lettered += 1
            self.dead_letter_error = None
        else:
            self._dead_letter_failed("the broker did not confirm it")

    def _dead_letter_failed(self, why: str) -> None:
        self.dead_letter_errors += 1
        self.dead_letter_error = (
            f"could not park a poison message in '{self.cfg.dead_letter_queue}': {why}"
        )
        log.warning("RabbitMQ consumer: %s", self.dead_letter_error)

    def _on_channel_closed(self, gen: int, closed: asyncio.Future[BaseException | None]) -> None:
        if gen == self._gen:
            self.fail(closed.result())

    def _on_cancel(self, gen: int, _frame: Any) -> None:
        if gen == self._gen:
            self.fail(LinkLost(f"RabbitMQ cancelled the consumer of queue '{self.cfg.queue}'"))

    def _on_dl_confirm(self, gen: int, frame: Any) -> None:
        if gen != self._gen:
            return
        method = frame.method
        ok = method.NAME == "Basic.Ack"
        tag = method.delivery_tag
        tags = [t for t in self._dl_waiting if t <= tag] if method.multiple else [tag]
        for t in tags:
            fut = self._dl_waiting.pop(t, None)
            if fut is not None and not fut.done():
                fut.set_result(ok)

    # -- health ----------------------------------------------------------------------------

    async def poll_queue(self) -> None:
        """Messages ready and consumers, from a passive declare on a side channel."""
        conn = self.conn
        if conn is None or not self.connected or self._lost is None:
            return
        mon = self._monitor
        if mon is None or not mon.is_open:
            mon = self._monitor = await Channel.open(conn, self._lost)
        frame = await mon.call(mon.ch.queue_declare, queue=self.cfg.queue, passive=True)
        self.queue_messages = frame.method.message_count
        self.queue_consumers = frame.method.consumer_count
