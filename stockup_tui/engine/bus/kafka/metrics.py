"""Window snapshots to the Kafka metrics topic (read by `--role monitor`), keyed by symbol.

At least once, without transactions: the analyzer's output is a function of the log, so a
snapshot written again (by an analyzer restarted after a crash, replaying what it had not
committed, or by one frozen past its session that wakes up) is byte for byte the one already
there, and a reader keeping the latest per symbol and window end sees no difference. That is why
nothing here can hold the consumer up: the snapshots go through the bus's own bounded outbox and
producer thread (`kafka/producer.py`); past the bound they are counted (`metrics_topic_full`).
They are offered to be gathered: what one second's deliveries emit leaves in one request.
"""

from __future__ import annotations

from collections.abc import Sequence

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.bus.kafka.producer import KafkaPublisher, Outgoing
from stockup_tui.engine.codec import encode_snapshot
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import SinkFigures


class KafkaMetricsSink:
    name = "kafka-metrics"

    def __init__(self, cfg: KafkaConfig, publisher: KafkaPublisher, drops: Drops) -> None:
        self.cfg = cfg
        self.publisher = publisher
        self.drops = drops
        self.written = 0  # handed to the producer
        self.dropped = 0

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        topic = self.cfg.metrics_topic
        items = [Outgoing(topic, s.symbol.encode(), encode_snapshot(s)) for s in snapshots]
        rest = self.publisher.offer(items, gather=True)
        if rest:
            self.dropped += len(rest)
            self.drops.add(
                "metrics_topic_full",
                len(rest),
                detail=f"Kafka outbox full ({self.publisher.buffer_bytes:,} bytes)",
            )
        self.written += len(items) - len(rest)

    def figures(self) -> SinkFigures:
        return SinkFigures(written=self.written, dropped=self.dropped)

    async def close(self) -> None:
        return None  # the bus's producer sends what is queued when the bus closes
