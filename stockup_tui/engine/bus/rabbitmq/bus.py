"""RabbitMQ as the bus (`bus.kind = "rabbitmq"`), with pika on the pipeline's own event loop.

Topology (declared by the app when missing, durable): a topic exchange (`rabbitmq.exchange`)
where every message is published with its symbol as the routing key; the analyzer's queue
(`rabbitmq.queue`, a stream by default) bound to it with `#` (every symbol); a fanout
dead-letter exchange with its queue for messages the analyzer cannot decode.

- Publishing (`rabbitmq/publisher.py`): asynchronous publisher confirms, many messages in
  flight, confirmed in bulk; unconfirmed messages are kept (up to `bus.buffer_bytes`) and
  written again in order after a reconnect.
- Consuming (`rabbitmq/consumer.py`): prefetch, manual `multiple` acks after processing; on a
  stream, a checkpoint file (`rabbitmq/checkpoint.py`) makes a restart replay exactly what the
  windows need (see the recovery contract in `base.py`).
- Connections (`rabbitmq/amqp.py`): publisher and consumer each have their own connection,
  which reconnects by itself with backoff; errors are worded for the user and logged once per
  change of state; the password never appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence

from stockup_tui.config import Settings
from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.base import ALL_PARTITIONS, BusStats, Delivery, Message
from stockup_tui.engine.bus.rabbitmq.amqp import connection_parameters, quiet_pika
from stockup_tui.engine.bus.rabbitmq.checkpoint import CheckpointFile, default_checkpoint_path
from stockup_tui.engine.bus.rabbitmq.consumer import Consumer
from stockup_tui.engine.bus.rabbitmq.publisher import Publisher
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.latency import LatencyHistogram
from stockup_tui.engine.stats import (
    AmqpLink,
    RabbitConsumerFigures,
    RabbitFigures,
    RabbitPublisherFigures,
    RateMeter,
)

log = logging.getLogger(__name__)

START_WAIT = 3.0  # start() waits this long at most for the first connection attempts
DRAIN_TIMEOUT = 10.0  # close(): for confirms, then for the consumer to reach our end marker
STATS_INTERVAL = 1.0
POLL_EVERY = 5  # stats ticks between passive declares (queue messages and consumers)


class RabbitMQBus:
    def __init__(
        self,
        settings: Settings,
        drops: Drops,
        *,
        publish: bool = True,
        consume: bool = True,
    ) -> None:
        cfg = settings.rabbitmq
        self.cfg = cfg
        self.drops = drops
        self.stats = BusStats(kind="rabbitmq")
        self._id = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"
        role = settings.role
        self.publisher: Publisher | None = None
        self.consumer: Consumer | None = None
        if publish:
            self.publisher = Publisher(
                cfg,
                connection_parameters(cfg, f"stockup-tui {role} publisher"),
                drops,
                settings.bus.buffer_bytes,
            )
        if consume:
            checkpoint = None
            if cfg.queue_type == "stream":
                path = cfg.checkpoint or default_checkpoint_path(cfg.vhost, cfg.queue)
                checkpoint = CheckpointFile(path, cfg.vhost, cfg.queue)
            self.consumer = Consumer(
                cfg,
                connection_parameters(cfg, f"stockup-tui {role} consumer"),
                checkpoint=checkpoint,
                marker=self._id,
            )
        self._links = [link for link in (self.publisher, self.consumer) if link is not None]
        self._closed = False
        self.drain_timeout = DRAIN_TIMEOUT
        # Role all: messages published here and not yet handed to the analyzer, at most (half
        # the consumer's prefetch: enough in flight to keep the broker busy; measured with
        # benchmarks/bench_rabbitmq.py, larger bounds only add latency under overload).
        self.max_ahead = max(100, cfg.prefetch // 2)
        self._ticker: asyncio.Task[None] | None = None
        self._rates = RateMeter()
        self._confirm_prev = LatencyHistogram()  # confirm latency of the previous tick

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        quiet_pika()
        if self.consumer is not None:
            self.consumer.load_checkpoint()
        for link in self._links:
            link.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="rabbitmq:stats")
        # Wait for the first attempt only (a refused or unreachable server answers fast): the
        # links keep trying by themselves, and messages published meanwhile are buffered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(link.first_attempt.wait() for link in self._links)), START_WAIT
            )
        self._refresh()

    def route(self, key: bytes) -> int:
        return 0  # one stream (or queue): the analyzer reads it in order

    async def publish(self, messages: Sequence[Message]) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        pub, con = self.publisher, self.consumer
        if pub is None:
            raise RuntimeError("this role does not publish (rabbitmq bus built for consuming)")
        if messages:
            # One stream: a watermark for every partition is one message (its routing key is
            # not a symbol, and the analyzer tells it by its content).
            pub.publish(
                [
                    Message(b"~watermark", m.payload, 0) if m.partition == ALL_PARTITIONS else m
                    for m in messages
                ]
            )
        if con is not None:
            # Role all: the source must not run ahead of our own analyzer through the broker
            # (the memory bus bounds its queue the same way), or under overload the shared loop
            # feeds the broker while the analyzer starves and latency grows without bound. A
            # consumer that is away or not running never holds the source back.
            while (
                pub.accepted - con.delivered > self.max_ahead
                and con.connected
                and con.consuming
                and not self._closed
            ):
                con.progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(con.progress.wait(), 0.05)

    def consume(self) -> AsyncIterator[Delivery]:
        if self.consumer is None:
            raise RuntimeError("this role does not consume (rabbitmq bus built for publishing)")
        return self.consumer.deliveries()

    async def ack(self, delivery: Delivery, checkpoints: Mapping[int, Checkpoint]) -> None:
        if self.consumer is not None:
            self.consumer.ack(delivery, checkpoints.get(0))

    async def dead_letter(self, message: Message, reason: str) -> None:
        if self.consumer is None:
            return
        try:
            await self.consumer.dead_letter(message, reason)
        except Exception as exc:  # must not raise (see the Bus contract)
            log.exception("RabbitMQ dead-lettering failed: %s", exc)

    def unsent_trades(self) -> int:
        return 0 if self.publisher is None else self.publisher.unconfirmed_trades

    async def close(self) -> None:
        """Waits for confirms (and, in role all, for the consumer to read everything published
        here), then closes both connections."""
        if self._closed:
            return
        self._closed = True
        pub, con = self.publisher, self.consumer
        marker = False
        if pub is not None:
            ok = await pub.drain(self.drain_timeout)
            if ok and con is not None and con.connected:
                pub.publish_marker(self._id)
                marker = await pub.drain(self.drain_timeout)
            if not ok or pub.unconfirmed:
                n, trades = pub.unconfirmed, pub.abandon()
                if n:
                    self.drops.add("bus_unconfirmed", max(trades, 1))
                    log.error(
                        "RabbitMQ publisher: %d message(s) (%d trades) were never confirmed "
                        "within %.0fs of closing: lost",
                        n,
                        trades,
                        self.drain_timeout,
                    )
            await pub.stop()
        if con is not None:
            con.begin_close(await_marker=marker, timeout=self.drain_timeout)
            if con.consuming:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(con.done.wait(), self.drain_timeout + 1)
            await con.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._refresh()
        self.stats.connected = False

    # -- health ----------------------------------------------------------------------------

    async def _tick(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            n += 1
            con = self.consumer
            # Streams answer a passive declare with 0 messages and 0 consumers: not polled.
            if n % POLL_EVERY == 1 and con is not None and con.connected and not con.stream:
                try:
                    await con.poll_queue()
                except Exception as exc:
                    # 404: the queue was deleted under us; reconnecting declares it again.
                    con.fail(exc)
            self._refresh()
            if self.publisher is not None:  # confirm latency over the last two ticks
                self._confirm_prev = self.publisher.latency
                self.publisher.latency = LatencyHistogram()

    def _refresh(self) -> None:
        """Turns the links' counters into `stats` (once a second, and on start/close)."""
        s = self.stats
        pub, con = self.publisher, self.consumer
        now = time.monotonic()
        links = []
        errors = []
        for link in self._links:
            down_for = None
            if link.connected:
                state = "up"
            elif link.stopped:
                state = "closed"
            elif link.down_since is not None:
                state, down_for = "down", now - link.down_since
            else:
                state = "connecting"
            links.append(AmqpLink(link.name, state, down_for, max(0, link.connections - 1)))
            if link.last_error:
                errors.append(link.last_error)
        s.connected = all(link.connected for link in self._links)
        publisher = consumer = None
        if pub is not None:
            s.published_messages = pub.confirmed
            s.published_bytes = pub.confirmed_bytes
            s.publish_errors = pub.nacked + pub.returned + pub.dropped
            h = LatencyHistogram()
            h.merge(self._confirm_prev)
            h.merge(pub.latency)
            publisher = RabbitPublisherFigures(
                publish_per_s=self._rates.rate("accepted", pub.accepted, now),
                confirm_per_s=self._rates.rate("confirmed", pub.confirmed, now),
                confirm_p50=h.percentile(0.5),
                confirm_p99=h.percentile(0.99),
                unconfirmed=pub.unconfirmed,
                buffered_bytes=pub.buffered_bytes,
                republished=pub.republished,
                blocked_reason=pub.blocked_reason,
            )
            if pub.full_error:
                errors.append(pub.full_error)
        if con is not None:
            s.consumed_messages = con.delivered
            s.acked_messages = con.acked
            consumer = RabbitConsumerFigures(
                consume_per_s=self._rates.rate("consumed", con.delivered, now),
                unacked=con.backlog,
                # Streams answer a passive declare with 0 consumers: not a figure.
                queue_consumers=None if con.stream else con.queue_consumers,
                acked_offset=con.acked_offset if con.stream else None,
                replaying=con.stream and con.replaying,
                replayed=con.replayed if con.stream else None,
                dead_lettered=con.dead_lettered,
                dead_letter_errors=con.dead_letter_errors,
            )
            if pub is not None:  # role all: between our source and our analyzer
                s.queue_depth = max(0, pub.accepted - con.delivered)
                s.queue_capacity = self.max_ahead
            elif con.stream:  # delivered, not yet acknowledged: the prefetch is no bound on it
                s.queue_depth = con.backlog
                s.queue_capacity = 0
            else:
                s.queue_depth = (con.queue_messages or 0) + con.backlog
                s.backlog = s.queue_depth
            s.publish_errors += con.dead_letter_errors
            if con.dead_letter_error and con.dead_letter_errors:
                errors.append(con.dead_letter_error)
        elif pub is not None:
            s.queue_depth = pub.unconfirmed
        s.last_error = " | ".join(list(dict.fromkeys(errors))[:2]) if errors else None
        s.detail = RabbitFigures(
            tuple(links), self.cfg.queue_type, self.cfg.queue, publisher, consumer
        )
