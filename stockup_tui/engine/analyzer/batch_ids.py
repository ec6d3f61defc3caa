"""Applies each published batch at most once, whatever the bus redelivers.

Every batch is stamped with (producer id, sequence) when it is published, and one producer's
batches of one symbol reach the analyzer in publish order (one Kafka partition, one RabbitMQ
queue). A batch whose sequence is not above the last one applied for its (producer, symbol) is
therefore a redelivery or a republish: it is skipped and counted (`bus_duplicate`). State is one
integer per producer and symbol, so it costs nothing per trade and rebuilds itself on a replay.
"""

from __future__ import annotations


class BatchIds:
    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def first_time(self, producer: str, symbol: str, seq: int) -> bool:
        """True (and remembered) if this batch has not been applied yet."""
        key = (producer, symbol)
        last = self._last.get(key)
        if last is not None and seq <= last:
            return False
        self._last[key] = seq
        return True

    def forget(self, symbol: str) -> None:
        """Drops the state of a symbol that this process no longer owns."""
        for key in [k for k in self._last if k[1] == symbol]:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)
