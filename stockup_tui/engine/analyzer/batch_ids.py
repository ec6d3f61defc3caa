"""Applies each published batch at most once, whatever the bus redelivers.

Every batch is stamped with (producer id, sequence) when it is published. Per (producer, symbol)
the filter remembers the last `RECENT` sequences it applied: a batch seen among them is a
redelivery or a republish, skipped and counted (`bus_duplicate`). Arrival order is not assumed:
a producer that re-sends a failed batch after later ones (a broker restart resets Kafka's
idempotent sequence; a RabbitMQ nack) still has it applied once. A sequence older than all it
remembers (more than `RECENT` batches of that symbol ago) is treated as already applied. Each
partition has its own (`partition.py`): it goes with the partition and rebuilds itself on a
replay. One set lookup per message, nothing per trade.
"""

from __future__ import annotations

from collections import deque

#: Batches remembered per producer and symbol (~10 s of one symbol's flushes at 100/s).
RECENT = 1024


class _Recent:
    __slots__ = ("order", "seen")

    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.seen: set[int] = set()


class BatchIds:
    def __init__(self, recent: int = RECENT) -> None:
        self._recent = recent
        self._keys: dict[tuple[str, str], _Recent] = {}

    def first_time(self, producer: str, symbol: str, seq: int) -> bool:
        """True (and remembered) if this batch has not been applied yet."""
        key = (producer, symbol)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Recent()
        seen = state.seen
        if seq in seen:
            return False
        order = state.order
        if len(order) >= self._recent:
            if seq < min(order[0], order[-1]) and seq < min(seen):
                return False  # older than everything remembered: applied long ago
            seen.discard(order.popleft())
        order.append(seq)
        seen.add(seq)
        return True

    def __len__(self) -> int:
        return len(self._keys)
