"""Builds the configured bus; network clients are imported only when chosen."""

from __future__ import annotations

from stockup_tui.config import Settings
from stockup_tui.engine.bus.base import Bus
from stockup_tui.engine.bus.memory import MemoryBus
from stockup_tui.engine.drops import Drops

#: Extra history replayed on recovery beyond the longest window: producer timestamps and trade
#: times come from different clocks, and replaying a little more than needed costs nothing.
REPLAY_MARGIN_MS = 30_000


def replay_ms(settings: Settings) -> int:
    """How far before the last acknowledged watermark a restarted analyzer rewinds."""
    return max(settings.windows_ms) + settings.emit_interval_ms + REPLAY_MARGIN_MS


def create_bus(settings: Settings, drops: Drops) -> Bus:
    """The bus for `settings.bus.kind`, publishing and/or consuming as the role needs.

    Network buses count what they must drop (`bus_buffer_full`) in `drops`.
    """
    kind = settings.bus.kind
    role = settings.role
    publish = role in ("all", "query")
    consume = role in ("all", "analyzer")
    if kind == "memory":
        return MemoryBus(settings.bus.queue_size)
    if kind == "kafka":
        from stockup_tui.engine.bus.kafka import KafkaBus

        return KafkaBus(
            settings, drops, publish=publish, consume=consume, replay_ms=replay_ms(settings)
        )
    if kind == "rabbitmq":
        from stockup_tui.engine.bus.rabbitmq import RabbitMQBus

        return RabbitMQBus(
            settings, drops, publish=publish, consume=consume, replay_ms=replay_ms(settings)
        )
    raise ValueError(f"unknown bus kind {kind!r}")
