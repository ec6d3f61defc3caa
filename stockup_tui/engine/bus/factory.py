"""Builds the configured bus; network clients are imported only when chosen."""

from __future__ import annotations

from stockup_tui.config import Settings
from stockup_tui.engine.bus.base import Bus
from stockup_tui.engine.bus.memory import MemoryBus
from stockup_tui.engine.drops import Drops


def create_bus(settings: Settings, drops: Drops) -> Bus:
    """The bus for `settings.bus.kind`, publishing and/or consuming as the role needs.

    Network buses count what they must drop (`bus_buffer_full`) in `drops`.
    """
    kind = settings.bus.kind
    publish = settings.role.has_feed
    consume = settings.role.analyzes
    if kind == "memory":
        return MemoryBus(settings.bus.queue_size)
    if kind == "kafka":
        from stockup_tui.engine.bus.kafka.bus import KafkaBus

        return KafkaBus(settings, drops, publish=publish, consume=consume)
    if kind == "rabbitmq":
        from stockup_tui.engine.bus.rabbitmq.bus import RabbitMQBus

        return RabbitMQBus(settings, drops, publish=publish, consume=consume)
    raise ValueError(f"unknown bus kind {kind!r}")
