"""The RabbitMQ bus against the real server: round trips on every queue type, confirms and the
resend buffer, the broker stopped mid-stream, dead letters, stream checkpoints and replay,
clear errors for wrong credentials. Every test uses its own exchange and queues (deleted at the
end) and waits on conditions, never on bare sleeps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stockup_tui.config import ConfigError, Settings
from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.base import Delivery, Message
from stockup_tui.engine.bus.factory import create_bus
from stockup_tui.engine.bus.rabbitmq.bus import RabbitMQBus
from stockup_tui.engine.bus.rabbitmq.checkpoint import CheckpointFile
from stockup_tui.engine.drops import ROUTINE_REASONS, Drops
from stockup_tui.engine.stats import RabbitFigures
from stockup_tui.engine.wiring import build_pipeline
from tests.helpers import ListSink, make_recording, wait_until
from tests.integration import rabbitmq_helpers as rmq
from tests.services import require_rabbitmq

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def section(tmp_path: Path) -> Iterator[dict[str, Any]]:
    require_rabbitmq()
    sec = rmq.names("stream", tmp_path)
    yield sec
    rmq.delete_all(sec)


def settings(section: dict[str, Any], **data: Any) -> Settings:
    return Settings.model_validate({"bus": {"kind": "rabbitmq"}, "rabbitmq": section, **data})


def payloads(n: int, start: int = 0, symbol: bytes = b"AAPL") -> list[Message]:
    return [Message(symbol, b"m%06d" % i, 1) for i in range(start, start + n)]


def nothing_to_replay(d: Delivery) -> Checkpoint:
    """The checkpoint of an analyzer that needs none of what it has read."""
    return Checkpoint(d.messages[-1].offset + 1, 1_000)


class Collector:
    """Consumes a bus in the background, acking each delivery with the checkpoint a function of
    the delivery gives (as the analyzer would)."""

    def __init__(
        self, bus: RabbitMQBus, checkpoint: Callable[[Delivery], Checkpoint] = nothing_to_replay
    ) -> None:
        self.bus = bus
        self.checkpoint = checkpoint
        self.messages: list[Message] = []
        self.starts: list[dict[int, int | None]] = []
        self.deliveries = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for d in self.bus.consume():
            self.messages.extend(d.messages)
            self.deliveries += 1
            if d.starts:
                self.starts.append(dict(d.starts))
            await self.bus.ack(d, {0: self.checkpoint(d)})

    @property
    def bodies(self) -> list[bytes]:
        return [m.payload for m in self.messages]


@pytest.mark.parametrize("queue_type", ["stream", "quorum", "classic"])
async def test_round_trip_in_order_with_confirms(tmp_path: Path, queue_type: str) -> None:
    require_rabbitmq()
    sec = rmq.names(queue_type, tmp_path)
    try:
        bus = RabbitMQBus(settings(sec), Drops())
        await bus.start()
        assert bus.stats.connected, bus.stats.last_error
        got = Collector(bus)
        sent = payloads(3000)
        for i in range(0, len(sent), 100):  # many in flight, never one wait per message
            await bus.publish(sent[i : i + 100])
        await wait_until(lambda: len(got.messages) >= 3000, 30, "3000 messages back")
        await bus.close()
        await asyncio.wait_for(got.task, 10)
        assert got.bodies == [m.payload for m in sent]  # one queue: publish order kept
        assert {m.key for m in got.messages} == {b"AAPL"}
        assert not any(m.replay for m in got.messages)
        s = bus.stats
        assert s.published_messages == 3000 and s.consumed_messages == 3000
        assert s.acked_messages == 3000 and s.publish_errors == 0
        assert isinstance(s.detail, RabbitFigures) and s.detail.publisher is not None
        assert s.detail.publisher.confirm_p99 is not None  # confirms were measured
        assert (s.detail.queue_type, s.detail.queue) == (queue_type, sec["queue"])
        assert s.connected is False and s.last_error is None
    finally:
        rmq.delete_all(sec)


async def test_a_fresh_stream_consumer_reads_the_whole_stream(section: dict[str, Any]) -> None:
    """No checkpoint: the whole retained stream, as a new Kafka group reads its topic, so a new
    analyzer emits the same history as any other."""
    first = RabbitMQBus(settings(section, role="query"), Drops(), consume=False)
    await first.start()
    await first.publish(payloads(50))
    await first.close()
    assert first.stats.published_messages == 50
    section["checkpoint"] = section["checkpoint"] + ".other"  # no checkpoint: a fresh analyzer
    bus = RabbitMQBus(settings(section), Drops())
    await bus.start()
    got = Collector(bus)
    await bus.publish(payloads(5, 1000))
    await bus.close()
    await asyncio.wait_for(got.task, 15)
    assert got.bodies == [m.payload for m in payloads(50) + payloads(5, 1000)]
    assert [m.offset for m in got.messages] == list(range(55))
    assert not any(m.replay for m in got.messages)


async def test_analyzer_restart_replays_from_the_checkpoint(section: dict[str, Any]) -> None:
    """Stream recovery: the restarted consumer attaches at the checkpoint's `replay_from`,
    starts the analyzer at the checkpoint's watermark and marks everything up to the last
    processed offset as a replay; later messages are live."""
    bus = RabbitMQBus(settings(section), Drops())
    await bus.start()

    def keep_the_last_ten(d: Delivery) -> Checkpoint:  # as if the windows held ten messages
        last = d.messages[-1].offset
        return Checkpoint(max(0, last - 9), 1_000_000 + last * 1000)

    got = Collector(bus, keep_the_last_ten)
    for i, m in enumerate(payloads(60)):  # one by one: a checkpoint after each message
        await bus.publish([m])
        await wait_until(lambda i=i: len(got.messages) > i, 20, f"message {i}")
    await bus.close()
    await asyncio.wait_for(got.task, 10)
    cp = CheckpointFile(Path(section["checkpoint"]), section["vhost"], section["queue"]).load()
    assert cp is not None and cp.offset == 59
    assert (cp.replay_from, cp.watermark_ms) == (50, 1_059_000)

    again = RabbitMQBus(settings(section), Drops())
    await again.start()
    got2 = Collector(again)
    await wait_until(lambda: len(got2.messages) >= 60 - cp.replay_from, 20, "the replay")
    await again.publish(payloads(3, 60))
    await wait_until(lambda: len(got2.messages) >= 63 - cp.replay_from, 20, "new messages")
    await again.close()
    await asyncio.wait_for(got2.task, 10)
    expected = [m.payload for m in payloads(60 - cp.replay_from, cp.replay_from)]
    assert got2.bodies[: len(expected)] == expected
    assert all(m.replay for m in got2.messages[: len(expected)])
    assert got2.bodies[len(expected) :] == [b"m000060", b"m000061", b"m000062"]
    assert not any(m.replay for m in got2.messages[len(expected) :])
    assert got2.starts == [{0: 1_059_000}]  # the analyzer's state starts there, once


async def test_stale_checkpoint_of_a_recreated_stream_is_ignored(
    section: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    bus = RabbitMQBus(settings(section), Drops())
    await bus.start()
    got = Collector(bus)
    await bus.publish(payloads(20))
    await wait_until(lambda: len(got.messages) >= 20, 20, "20 messages")
    await bus.close()
    await asyncio.wait_for(got.task, 10)
    rmq.delete_all(section)  # the stream is deleted and declared again: offsets restart at 0
    fresh = RabbitMQBus(settings(section, role="query"), Drops(), consume=False)
    await fresh.start()
    await fresh.publish(payloads(25, 500))
    await fresh.close()

    caplog.set_level(logging.WARNING)
    again = RabbitMQBus(settings(section), Drops())
    await again.start()
    got2 = Collector(again)
    await wait_until(lambda: len(got2.messages) >= 25, 20, "the new stream from its start")
    await again.close()
    await asyncio.wait_for(got2.task, 10)
    assert got2.bodies == [m.payload for m in payloads(25, 500)]
    assert not any(m.replay for m in got2.messages)  # nothing silenced by the old offsets
    assert "ignoring the checkpoint" in caplog.text


async def test_poison_message_is_dead_lettered_counted_and_the_stream_goes_on(
    section: dict[str, Any], tmp_path: Path
) -> None:
    rec = tmp_path / "rec.jsonl"
    truth = make_recording(rec)
    total = sum(len(v) for v in truth.values())
    sink = ListSink()
    s = settings(
        section, symbols=["AAPL"], windows=["1m"], source={"kind": "replay", "replay": rec}
    )
    pipe = build_pipeline(s, sinks=[sink])
    await pipe.start()
    try:
        await wait_until(lambda: pipe.analyzer.ingested >= 100, 20, "trades flowing")
        rmq.publish_raw(section["exchange"], "AAPL", b"\x80not json at all")
        rmq.publish_raw(section["exchange"], "AAPL", orjson.dumps({"v": 9, "kind": "trades"}))
        await pipe.wait_source_done()
        await wait_until(lambda: pipe.analyzer.ingested == total, 20, "every good trade")
        await wait_until(lambda: pipe.bus.consumer.dead_lettered == 2, 20, "2 dead letters")
    finally:
        await pipe.stop()
    assert pipe.drops.get("bus_malformed_json") == 1 and pipe.drops.get("bus_wrong_version") == 1
    parked = rmq.get_all(section["dead_letter_queue"])
    assert sorted(p.headers["x-stockup-reason"] for p, _ in parked) == [
        "malformed_json",
        "wrong_version",
    ]
    assert b"\x80not json at all" in [body for _, body in parked]
    assert all(p.headers["x-stockup-queue"] == section["queue"] for p, _ in parked)
    detail = pipe.stats.bus.detail
    assert isinstance(detail, RabbitFigures) and detail.consumer is not None
    assert detail.consumer.dead_lettered == 2 and detail.consumer.dead_letter_errors == 0
    assert all(st.restarts == 0 for st in pipe.stats.stages)


async def test_full_buffer_drops_are_counted_and_unconfirmed_are_reported_at_close(
    section: dict[str, Any],
) -> None:
    section["port"] = 9  # nothing listens there: the broker is away from the start
    drops = Drops()
    s = settings(section, role="query", bus={"kind": "rabbitmq", "buffer_bytes": 2048})
    bus = create_bus(s, drops)
    assert isinstance(bus, RabbitMQBus)
    bus.drain_timeout = 0.5
    await bus.start()
    assert not bus.stats.connected
    await bus.publish([Message(b"AAPL", b"x" * 500, 10) for _ in range(6)])  # 4 fit in 2048
    assert drops.get("bus_buffer_full") == 20
    bus._refresh()
    assert "cannot reach RabbitMQ" in (bus.stats.last_error or "")
    assert "bus.buffer_bytes" in (bus.stats.last_error or "")
    detail = bus.stats.detail
    assert isinstance(detail, RabbitFigures) and detail.publisher is not None
    assert detail.publisher.unconfirmed == 4
    await asyncio.wait_for(bus.close(), 10)
    assert drops.get("bus_unconfirmed") == 40  # the 4 kept were never confirmed: counted


async def test_wrong_credentials_give_a_clear_error_once_and_keep_retrying(
    section: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stockup_tui")
    section["password"] = "not-the-password"
    bus = RabbitMQBus(settings(section), Drops())
    await bus.start()
    err = bus.stats.last_error or ""
    assert not bus.stats.connected
    assert "refused the login for user 'stockup' on vhost 'stocks'" in err
    assert "STOCKUP_RABBITMQ__PASSWORD" in err
    # Several attempts later: still one line per connection, no flood, no crash.
    await wait_until(lambda: bus.consumer.down_since is not None, 5, "down")
    attempts = {"n": 0}
    original = bus.consumer._down

    def counting(reason: Any, delay: float) -> None:
        attempts["n"] += 1
        original(reason, delay)

    bus.consumer._down = counting  # type: ignore[method-assign]
    await wait_until(lambda: attempts["n"] >= 3, 15, "3 more attempts")
    await bus.close()
    lines = [r for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(lines) == 2  # publisher and consumer, once each
    assert "not-the-password" not in caplog.text and "not-the-password" not in err


async def test_wrong_vhost_and_unreachable_port_are_worded_for_the_user(
    section: dict[str, Any],
) -> None:
    section["vhost"] = "no-such-vhost"
    bus = RabbitMQBus(settings(section, role="query"), Drops(), consume=False)
    await bus.start()
    assert "access to vhost 'no-such-vhost'" in (bus.stats.last_error or "")
    await bus.close()
    section["vhost"] = rmq.RABBITMQ_VHOST
    section["port"] = 9  # discard: nothing listens
    bus = RabbitMQBus(settings(section, role="query"), Drops(), consume=False)
    await bus.start()
    assert "cannot reach RabbitMQ at" in (bus.stats.last_error or "")
    assert "connection refused" in (bus.stats.last_error or "")
    await bus.close()


def test_bad_tls_ca_file_is_a_configuration_error(section: dict[str, Any], tmp_path: Path) -> None:
    section.update(tls=True, tls_cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"rabbitmq\.tls_cafile"):
        RabbitMQBus(settings(section), Drops())


@pytest.mark.slow
async def test_broker_stopped_for_10s_mid_stream_loses_nothing(section: dict[str, Any]) -> None:
    """The simulator streams through the whole pipeline while the broker stops for 10 s:
    publisher and consumer reconnect by themselves and every trade is accounted for."""
    if not rmq.can_control_server():
        pytest.skip("neither scripts/rabbitmq.sh nor rabbitmqctl is available")
    s = settings(
        section,
        symbols=["AAPL", "MSFT", "TSLA"],
        windows=["1m"],
        simulator={"rate": 2000, "seed": 5},
    )
    pipe = build_pipeline(s, live_interval=0.05)
    bus = pipe.bus
    assert isinstance(bus, RabbitMQBus)
    await pipe.start()
    stopped = False
    try:
        await wait_until(lambda: pipe.analyzer.ingested > 2000, 20, "trades flowing")
        await asyncio.to_thread(rmq.stop_app)
        stopped = True
        await wait_until(lambda: not bus.stats.connected, 10, "the bus to notice")
        during = pipe.parser.trades
        await wait_until(lambda: pipe.parser.trades > during + 15_000, 30, "10 s of trades")
        bus._refresh()
        assert bus.stats.last_error and "RabbitMQ" in bus.stats.last_error
        assert bus.publisher.unconfirmed > 0  # kept for resending
        await asyncio.to_thread(rmq.start_app)
        stopped = False
        await wait_until(lambda: bus.publisher.connected and bus.consumer.connected, 30, "back")
        caught_up = pipe.parser.trades
        await wait_until(lambda: pipe.analyzer.ingested >= caught_up, 30, "caught up")
    finally:
        if stopped:
            await asyncio.to_thread(rmq.start_app)
        await pipe.stop()
    assert pipe.analyzer.ingested == pipe.parser.trades  # every trade, exactly once
    bad = {k: v for k, v in pipe.drops.snapshot().items() if k not in ROUTINE_REASONS}
    assert bad == {}
    detail = pipe.stats.bus.detail
    assert isinstance(detail, RabbitFigures)
    assert [(link.name, link.state) for link in detail.links] == [
        ("publisher", "closed"),
        ("consumer", "closed"),
    ]
    assert all(link.reconnects >= 1 for link in detail.links)
