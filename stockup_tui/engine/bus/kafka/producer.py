"""The Kafka publishing side: a bounded outbox drained by one thread into an idempotent producer.

kafka-python's `send()` can block (metadata while the broker is away, bootstrap at creation), so
it never runs on the event loop: `offer()` only appends to the outbox. The outbox bound covers
everything not yet acknowledged by the broker (queued here plus in flight inside the client), so
memory is bounded whatever the broker does; past the bound new messages are refused and the
caller counts them. With `acks=all` and idempotence the client retries a batch until the broker
has it exactly once; a batch that still fails (delivery timeout) is sent again, in order, and its
batch id lets the analyzer skip it if the first attempt did land after all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.bus.base import ALL_PARTITIONS
from stockup_tui.engine.bus.kafka.common import (
    backoff,
    client_config,
    describe_error,
    ensure_topics,
    servers,
)
from stockup_tui.engine.latency import LatencyHistogram
from stockup_tui.engine.resilience import ErrorLatch

log = logging.getLogger(__name__)

#: In-flight messages unacknowledged for this long mean the broker is away.
STALL_S = 3.0
#: The longest wait between two connection attempts while close() waits for the last acks.
DRAINING_BACKOFF_MAX = 0.5
#: Records offered with `gather` (snapshots and status for monitors: nobody waits on them) are
#: held this long after the first of them, so that what an analyzer emits delivery by delivery
#: (one partition's watermark after another's) leaves in one request, not one each: a produce
#: costs about a millisecond of CPU whatever it carries.
GATHER_S = 0.2


@contextmanager
def sender_woken_once(producer: Any) -> Iterator[None]:
    """Within the block, the client's sender thread is woken once, at its end, not at every
    `send()` that opens a batch (one per partition of a flush: six wake-ups of a thread that
    then found nothing to send yet, each a fraction of a millisecond of CPU at a live pace).

    kafka-python has no call that sends several records, so this replaces its sender's
    `wakeup` on the instance for the block. `send()` also wakes the sender when it must wait
    for a topic's metadata, which would then wait out `max_block_ms`: the caller makes sure
    the metadata of every topic it sends to is known first. A client laid out otherwise
    (another version) is left as it is: every send wakes it, as before.
    """
    sender: Any = getattr(producer, "_sender", None)
    wakeup = getattr(sender, "wakeup", None)
    own = getattr(sender, "__dict__", None)
    if not callable(wakeup) or own is None or "wakeup" in own:
        yield
        return
    asked = False

    def later() -> None:
        nonlocal asked
        asked = True

    own["wakeup"] = later
    try:
        yield
    finally:
        del own["wakeup"]
        if asked:
            wakeup()


@dataclass(slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    trades: int = 0
    enqueued: float = 0.0  # monotonic, for the produce latency figure
    partition: int | None = None  # explicit; ALL_PARTITIONS: one copy to every partition


class KafkaPublisher:
    """Owns the producer thread; thread-safe `offer`, counters read by the stats tick."""

    def __init__(self, cfg: KafkaConfig, buffer_bytes: int) -> None:
        self.cfg = cfg
        self.buffer_bytes = buffer_bytes
        self._queue: deque[Outgoing] = deque()
        self._urgent = 0  # queued records offered without `gather`
        self._retry: deque[Outgoing] = deque()  # failed sends, resent first
        # One lock, two conditions: the producer thread waits for work (`_cond`), `flush()`
        # for acknowledgements (`_settled`). An ack per record woke the producer thread for
        # nothing when both waited on one condition.
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._settled = threading.Condition(lock)
        self._unacked_bytes = 0  # queued + in flight
        self.unacked_trades = 0
        self._in_flight = 0
        self._fanout = 1  # partitions of the topic, once known
        self._closing = False
        self._draining = False  # close() waits for the last acks: retry without long backoffs
        self._thread: threading.Thread | None = None
        self._ready = False  # a producer exists
        self.producer: Any = None  # kafka-python's, once connected (for its metrics)
        self._last_ack = time.monotonic()
        self.acked = 0
        self.acked_main = 0  # records of the trades topic (batches and watermark copies)
        self.acked_trades = 0
        self.errors = 0
        self.resent = 0
        self.partition_count = 0  # of the trades topic, once connected
        self._errors = ErrorLatch(log, "Kafka producer: %(error)s")
        self.latency = LatencyHistogram()  # offer -> broker acknowledgement, seconds
        self._lat_lock = threading.Lock()

    # -- any thread ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A producer exists and nothing in flight has waited for the broker for long."""
        if not self._ready:
            return False
        return self._in_flight == 0 or time.monotonic() - self._last_ack < STALL_S

    @property
    def last_error(self) -> str | None:
        return self._errors.error

    @property
    def pending_bytes(self) -> int:
        return self._unacked_bytes

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def offer(self, items: list[Outgoing], gather: bool = False) -> list[Outgoing]:
        """Queues what fits in the bound, in order; returns the messages that did not fit.
        `gather`: nobody waits on these, they may wait `GATHER_S` for company."""
        now = time.monotonic()
        with self._cond:
            room = self.buffer_bytes - self._unacked_bytes
            taken = 0
            for item in items:
                size = len(item.value)
                if size > room:
                    break
                room -= size
                item.enqueued = now
                taken += 1
            if taken:
                self.unacked_trades += sum(item.trades for item in items[:taken])
                was_empty = not self._queue
                self._queue.extend(items[:taken])
                self._unacked_bytes = self.buffer_bytes - room
                if not gather:
                    self._urgent += taken
                    self._cond.notify()
                elif was_empty:
                    self._cond.notify()  # starts the gathering clock
        return items[taken:]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-producer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Waits up to `timeout` for the broker to acknowledge everything queued (and for a
        broker that is away to come back meanwhile); True if it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._draining = True
            self._cond.notify_all()  # a thread waiting out a backoff tries again now
            if self._unacked_bytes and not self.connected and timeout > 0:
                log.warning(
                    "Kafka producer: waiting up to %.0fs for the broker to take %d trade(s)",
                    timeout,
                    self.unacked_trades,
                )
            while self._unacked_bytes and time.monotonic() < deadline:
                self._settled.wait(0.05)
            return self._unacked_bytes == 0

    def close(self, timeout: float) -> bool:
        """Sends what is queued (see `flush`), then stops; True if everything was acked."""
        deadline = time.monotonic() + timeout
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()) + 5)
        return done

    def retry_rate(self) -> float:
        """Records the client re-sent per second (its own metric), 0 before it exists."""
        producer = self.producer
        if producer is None:
            return 0.0
        try:
            return float(producer.metrics()["producer-metrics"]["record-retry-rate"])
        except (KeyError, TypeError, ValueError):
            return 0.0

    def take_latency(self) -> LatencyHistogram:
        with self._lat_lock:
            hist, self.latency = self.latency, LatencyHistogram()
        return hist

    # -- producer thread -------------------------------------------------------------------

    def _producer(self) -> Any:
        from kafka import KafkaProducer

        cfg = self.cfg
        return KafkaProducer(
            **client_config(cfg),
            acks="all",
            enable_idempotence=True,
            linger_ms=round(cfg.linger * 1000),
            batch_size=cfg.batch_bytes,
            compression_type=None if cfg.compression == "none" else cfg.compression,
            max_request_size=max(cfg.batch_bytes, 4 * 1024 * 1024),
            # While the broker is away the client keeps retrying on its own for this long;
            # the outbox bound, not this timeout, is what limits memory.
            delivery_timeout_ms=max(120_000, round(cfg.request_timeout * 1000) * 2),
            max_block_ms=5000,
        )

    def _run(self) -> None:
        producer = None
        retry = backoff()
        while not self._closing:
            if producer is None:
                try:
                    ensure_topics(self.cfg)
                    producer = self._producer()
                    self._learn_topics(producer)
                except Exception as exc:
                    if producer is not None:
                        producer.close(timeout=0)
                        producer = None
                    self._set_error(exc, f"cannot reach {servers(self.cfg)}")
                    with self._cond:
                        cap = DRAINING_BACKOFF_MAX if self._draining else None
                        self._cond.wait(retry.next(cap))
                    continue
                retry.reset()
                self._ready = True
                self.producer = producer
                self._errors.clear()
                log.info("Kafka producer connected to %s", ",".join(self.cfg.bootstrap_servers))
            with self._cond:
                while not self._queue and not self._retry and not self._closing:
                    self._cond.wait(0.5)
                self._gather()
                batch = list(self._retry) + list(self._queue)
                self._retry.clear()
                self._queue.clear()
                self._urgent = 0
            refused = self._unknown_topics(producer, batch)
            if not refused:
                with sender_woken_once(producer):
                    refused = self._send(producer, batch)
            if refused:  # sent again first, after a backoff
                with self._cond:
                    self._retry.extendleft(reversed(refused))
                    self._cond.wait(retry.next())
            else:
                retry.reset()
        if producer is not None:
            try:
                producer.flush(timeout=5)
            except Exception as exc:
                self._set_error(exc, "final flush failed")
            producer.close(timeout=5)
        self._ready = False

    def _gather(self) -> None:
        """With the lock held: while only gathered records are queued, waits until `GATHER_S`
        after the first of them (an urgent record, a retry, a flush or a close ends it)."""
        while self._queue and not (self._urgent or self._retry or self._closing or self._draining):
            left = self._queue[0].enqueued + GATHER_S - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _unknown_topics(self, producer: Any, batch: list[Outgoing]) -> list[Outgoing]:
        """Asks for the metadata of every topic in `batch` (so that no `send()` below waits
        for it); returns the whole batch when it is not known within `max_block_ms` (the
        broker is away), else nothing."""
        try:
            for topic in {item.topic for item in batch}:
                producer.partitions_for(topic)
        except Exception as exc:
            self._set_error(exc, "produce failed")
            return batch
        return []

    def _send(self, producer: Any, batch: list[Outgoing]) -> list[Outgoing]:
        """Hands `batch` to the client in order; returns what it refused, from the first
        refusal on (to be sent again after a backoff)."""
        for i, item in enumerate(batch):
            try:
                if item.partition == ALL_PARTITIONS:
                    batch[i + 1 : i + 1] = self._each_partition(producer, item)
                    self._unacked_bytes += len(item.value) * (self._fanout - 1)
                    continue
                future = producer.send(
                    item.topic,
                    value=item.value,
                    key=item.key,
                    headers=item.headers,
                    partition=item.partition,
                )
            except Exception as exc:  # metadata unavailable for max_block_ms, etc.
                self._set_error(exc, "produce failed")
                return batch[i:]
            if not self._in_flight:
                self._last_ack = time.monotonic()  # the stall clock starts now
            self._in_flight += 1
            future.add_callback(self._on_ack, item)
            future.add_errback(self._on_error, item)
        return []

    def _learn_topics(self, producer: Any) -> None:
        """Asks for the metadata of every topic this process may write to, once connected:
        `send()` to a topic whose metadata is unknown blocks (max_block_ms) until the broker
        answers, so a first snapshot or status record sent while the broker is away would
        hold every trade queued behind it."""
        cfg = self.cfg
        for topic in (
            cfg.topic,
            cfg.metrics_topic,
            cfg.status_topic,
            cfg.control_topic,
            cfg.dead_letter_topic,
        ):
            parts = producer.partitions_for(topic)
            if not parts:
                raise RuntimeError(f"no partitions known for topic {topic}")
            if topic == cfg.topic:
                self.partition_count = len(parts)  # the bus routes groups with it

    def _each_partition(self, producer: Any, item: Outgoing) -> list[Outgoing]:
        """One copy of `item` per partition of its topic (a watermark goes to all of them)."""
        parts = sorted(producer.partitions_for(item.topic) or ())
        if not parts:
            raise RuntimeError(f"no partitions known for topic {item.topic}")
        self._fanout = len(parts)
        return [
            Outgoing(item.topic, item.key, item.value, item.headers, 0, item.enqueued, p)
            for p in parts
        ]

    def _on_ack(self, item: Outgoing, metadata: Any) -> None:
        elapsed = time.monotonic() - item.enqueued
        with self._cond:
            self._unacked_bytes -= len(item.value)
            self.unacked_trades -= item.trades
            self._in_flight -= 1
            self.acked += 1
            if item.topic == self.cfg.topic:
                self.acked_main += 1
            self.acked_trades += item.trades
            self._last_ack = time.monotonic()
            self._settled.notify_all()
        with self._lat_lock:
            self.latency.record(elapsed, 1)

    def _on_error(self, item: Outgoing, exc: BaseException) -> None:
        self.errors += 1
        self._set_error(exc, "delivery failed; resending")
        with self._cond:
            self._in_flight -= 1
            self.resent += 1
            self._retry.append(item)
            self._cond.notify()  # the producer thread sends it again
            self._settled.notify_all()

    def _set_error(self, exc: BaseException, what: str) -> None:
        self._errors.set(f"{what}: {describe_error(exc)}")
