"""Window snapshots to the Kafka metrics topic, in the same transaction as the consumer offsets.

The analyzer's emitted snapshots are buffered here (the `Sink` side, on the event loop). When the
consumer thread commits the offsets of processed deliveries it calls `commit`, which opens a
transaction on a transactional producer, sends the buffered snapshots, adds the offsets with
`send_offsets_to_transaction` and commits: readers with `isolation_level=read_committed` (the
monitor role) never see snapshots of input whose offsets were not committed, and an aborted
transaction leaves neither. A crash between two transactions makes the restarted analyzer emit
the same (symbol, window end) snapshots again with the same values: keyed, idempotent.
Until the transactional producer is initialised (on its own thread), offsets are committed
without a transaction and snapshots wait: consumption never stalls on the coordinator.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.bus.kafka_common import client_config, describe_error
from stockup_tui.engine.codec import encode_snapshot
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot

log = logging.getLogger(__name__)

#: Snapshots kept while transactions fail (the broker away); past it they are counted drops.
MAX_PENDING = 200_000


class KafkaMetricsSink:
    name = "kafka-metrics"

    def __init__(self, cfg: KafkaConfig, drops: Drops) -> None:
        self.cfg = cfg
        self.drops = drops
        self._lock = threading.Lock()
        self._pending: list[tuple[bytes, bytes]] = []  # (key, value)
        self._producer: Any = None
        self._ready = threading.Event()  # the producer's transactions are initialised
        self._closing = threading.Event()
        self._init_thread: threading.Thread | None = None
        # Unique per process; fencing of a zombie comes from the group metadata (KIP-447).
        self.transactional_id = f"{cfg.group_id}-{os.urandom(6).hex()}"
        self.written = 0
        self.transactions = 0
        self.aborted = 0
        self.last_error: str | None = None

    # -- Sink (event loop) -----------------------------------------------------------------

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        items = [(s.symbol.encode(), encode_snapshot(s)) for s in snapshots]
        with self._lock:
            room = MAX_PENDING - len(self._pending)
            if room < len(items):
                self.drops.add("metrics_topic_full", len(items) - max(room, 0))
                items = items[: max(room, 0)]
            self._pending.extend(items)

    def figures(self) -> dict[str, object]:
        return {
            "written": self.written,
            "transactions": self.transactions,
            "aborted": self.aborted,
            "pending": len(self._pending),
            **({"error": self.last_error} if self.last_error else {}),
        }

    async def close(self) -> None:
        return None  # the consumer thread commits what is pending before it stops

    # -- commit hook (consumer thread) -----------------------------------------------------

    def has_pending(self) -> bool:
        return bool(self._pending)

    def commit(self, consumer: Any, offsets: dict[Any, Any]) -> None:
        """Sends pending snapshots and `offsets` in one transaction; raises if it failed.

        Until the transactional producer is ready (its initialisation runs on its own thread:
        on a fresh cluster the transaction coordinator can take seconds to appear), offsets are
        committed plainly and snapshots wait, so consumption and recovery never stall on it.
        """
        producer = self._producer if self._ready.is_set() else None
        if producer is None:
            self._start_init()
            if offsets:
                consumer.commit(offsets)
            return
        with self._lock:
            items, self._pending = self._pending, []
        try:
            producer.begin_transaction()
            topic = self.cfg.metrics_topic
            for key, value in items:
                producer.send(topic, key=key, value=value)
            if offsets:
                producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
            producer.commit_transaction()
        except Exception as exc:
            self.aborted += 1
            self.last_error = describe_error(exc)
            self._abort()
            with self._lock:
                self._pending[:0] = items  # kept, in order, for the next attempt
            raise
        self.transactions += 1
        self.written += len(items)
        self.last_error = None

    def close_producer(self) -> None:
        self._closing.set()
        self._ready.clear()
        if self._init_thread is not None:
            self._init_thread.join(15)
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception as exc:
                log.warning("Kafka metrics producer close failed: %s", describe_error(exc))
            self._producer = None

    def wait_ready(self, timeout: float) -> bool:
        """Before the last commit: give a pending initialisation the time to finish."""
        self._start_init()
        return self._ready.wait(timeout)

    def _start_init(self) -> None:
        if self._init_thread is None or not self._init_thread.is_alive():
            self._init_thread = threading.Thread(
                target=self._init, name="kafka-metrics-init", daemon=True
            )
            self._init_thread.start()

    def _init(self) -> None:
        """Creates the transactional producer and initialises it, retrying until it works."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaTimeoutError

        backoff = 0.5
        while not self._closing.is_set():
            try:
                if self._producer is None:
                    self._producer = KafkaProducer(
                        **client_config(self.cfg),
                        transactional_id=self.transactional_id,
                        enable_idempotence=True,
                        acks="all",
                        linger_ms=5,
                        max_block_ms=10_000,
                    )
                self._producer.init_transactions()
            except KafkaTimeoutError as exc:
                self.last_error = describe_error(exc)  # the same request is still pending
                continue
            except Exception as exc:
                self.last_error = describe_error(exc)
                log.warning("Kafka metrics producer: %s; retrying", self.last_error)
                producer, self._producer = self._producer, None
                if producer is not None:
                    producer.close(timeout=1)
                self._closing.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self.last_error = None
            self._ready.set()
            return

    def _abort(self) -> None:
        producer = self._producer
        if producer is None:
            return
        try:
            producer.abort_transaction()
        except Exception:
            # A fatal state (fenced, broker gone mid-transaction): start over with a new one.
            self._ready.clear()
            self._producer = None
            try:
                producer.close(timeout=1)
            except Exception as exc:
                log.warning("Kafka metrics producer close failed: %s", describe_error(exc))
