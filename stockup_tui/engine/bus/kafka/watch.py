"""Reads a small topic from every partition without a consumer group, on its own thread.

Used for the metrics topic (`--role monitor` shows what the analyzers emit) and for the compacted
control topic (watchlist changes from any screen reach the query process) and the status topic
(the monitor's cluster view). Values and their Kafka timestamps go to the event loop in batches
through a bounded hand-off (`common.Handoff`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.bus.kafka.common import (
    Handoff,
    backoff,
    client_config,
    describe_error,
    ensure_topics,
)
from stockup_tui.engine.resilience import ErrorLatch

log = logging.getLogger(__name__)

#: How long the broker holds a fetch of a quiet topic (a record ends it at once): at most half
#: the request timeout. Each empty answer is a round trip through the client's threads.
QUIET_FETCH_MS = 5000
#: How long a poll waits for records: how soon `stop()` is seen.
POLL_MS = 1000


class TopicWatcher:
    """`start_ms=None` reads from the beginning; otherwise from that produce time on."""

    def __init__(
        self,
        cfg: KafkaConfig,
        topic: str,
        loop: asyncio.AbstractEventLoop,
        start_ms: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.topic = topic
        self.start_ms = start_ms
        self.batches: Handoff[list[tuple[bytes, int]] | None] = Handoff(loop, 16)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = ErrorLatch(log, "Kafka %(topic)s reader: %(error)s", topic=topic)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"kafka-watch-{self.topic}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _open(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        ensure_topics(self.cfg)
        consumer = KafkaConsumer(
            **client_config(self.cfg),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            # A fetch is answered as soon as a record arrives; this bounds an empty one, and each
            # answer wakes two threads: these topics are quiet most of the time.
            fetch_max_wait_ms=min(QUIET_FETCH_MS, round(self.cfg.request_timeout * 500)),
            metrics_enabled=False,  # its sensors are a tenth of each poll's cost; unread
        )
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            consumer.close()
            raise RuntimeError(f"topic {self.topic} has no partitions yet")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if self.start_ms is None:
            consumer.seek_to_beginning(*tps)
        else:
            found = consumer.offsets_for_times({tp: self.start_ms for tp in tps})
            ends = consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        return consumer

    def _run(self) -> None:
        consumer = None
        retry = backoff()
        while not self._stop.is_set():
            if consumer is None:
                try:
                    consumer = self._open()
                except Exception as exc:
                    self._error(exc)
                    self._stop.wait(retry.next())
                    continue
                retry.reset()
            try:
                records = consumer.poll(timeout_ms=POLL_MS)  # also how soon stop() is seen
            except Exception as exc:
                self._error(exc)
                self._stop.wait(0.5)
                continue
            batch = [(r.value or b"", r.timestamp) for recs in records.values() for r in recs]
            if batch:
                self._put(batch)
        if consumer is not None:
            consumer.close()
        self._put(None)

    def _put(self, item: list[tuple[bytes, int]] | None) -> None:
        self.batches.put(item, lambda: self._stop.is_set() and item is not None, 5.0)

    def _error(self, exc: BaseException) -> None:
        self._errors.set(describe_error(exc))
