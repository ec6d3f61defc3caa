"""The Kafka bus's own logic without a broker: the outbox bound and what is counted past it."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from collections.abc import Callable

from stockup_tui.config import Settings
from stockup_tui.engine.bus.base import (
    HasMetricsTopic,
    HasStatusTopic,
    Message,
    SharesWatchlist,
)
from stockup_tui.engine.bus.kafka.bus import KafkaBus
from stockup_tui.engine.bus.kafka.common import Handoff
from stockup_tui.engine.bus.kafka.metrics import KafkaMetricsSink
from stockup_tui.engine.bus.kafka.producer import KafkaPublisher, Outgoing
from stockup_tui.engine.bus.memory import MemoryBus
from stockup_tui.engine.bus.rabbitmq.bus import RabbitMQBus
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.sinks.base import StartedSink
from stockup_tui.engine.sinks.influx.sink import InfluxSink


def item(size: int, trades: int = 1) -> Outgoing:
    return Outgoing("t", b"K", b"x" * size, None, trades)


def test_the_outbox_takes_what_fits_in_order_and_returns_the_rest() -> None:
    pub = KafkaPublisher(Settings().kafka, buffer_bytes=1000)
    rest = pub.offer([item(400, 2), item(400, 3), item(400, 4), item(10, 5)])
    # Order is kept: nothing after the first message that does not fit is taken.
    assert [len(i.value) for i in rest] == [400, 10]
    assert pub.pending_bytes == 800
    assert pub.unacked_trades == 5
    assert pub.offer([item(201)]) and pub.offer([item(200)]) == []
    assert pub.pending_bytes == 1000


async def test_a_full_outbox_with_no_broker_drops_and_counts_at_once() -> None:
    settings = Settings.model_validate(
        {"bus": {"kind": "kafka", "buffer_bytes": 2048}, "kafka": {"bootstrap_servers": "x:1"}}
    )
    drops = Drops()
    bus = KafkaBus(settings, drops, publish=True, consume=False)  # not started: no broker
    await bus.publish([Message(b"A", b"y" * 1500, 7), Message(b"B", b"y" * 1500, 11)])
    assert drops.snapshot() == {"bus_buffer_full": 11}
    assert bus.publisher.unacked_trades == 7
    assert not bus.stats.connected
    assert bus.stats.queue_depth == 1500


def test_route_is_the_default_partitioners_choice_and_follows_the_partition_count() -> None:
    from kafka.partitioner.default import murmur2

    bus = KafkaBus(Settings.model_validate({"bus": {"kind": "kafka"}}), Drops())
    assert bus.route(b"AAPL") is None  # the topic is not known yet
    keys = [f"SYM{i}".encode() for i in range(40)]
    for n in (6, 8):  # the topic grew: every key is hashed again for the new count
        bus.publisher.partition_count = n
        assert [bus.route(k) for k in keys] == [(murmur2(k) & 0x7FFFFFFF) % n for k in keys]


def test_the_pipeline_finds_what_each_bus_and_sink_can_do_by_its_declared_protocols() -> None:
    """Kafka carries the watchlist, the metrics and the status records; the other buses none
    of them; the InfluxDB sink is started by the pipeline, the others are not."""
    settings = Settings.model_validate({"bus": {"kind": "kafka"}})
    kafka = KafkaBus(settings, Drops())  # not started: no broker
    for capability in (SharesWatchlist, HasMetricsTopic, HasStatusTopic):
        assert isinstance(kafka, capability)
        assert not isinstance(MemoryBus(), capability)
        rabbit = RabbitMQBus(Settings.model_validate({"bus": {"kind": "rabbitmq"}}), Drops())
        assert not isinstance(rabbit, capability)
    assert kafka.instance() == ""  # no static member id claimed before start
    assert isinstance(kafka.metrics_sink, KafkaMetricsSink)
    assert isinstance(InfluxSink(settings.sinks.influx), StartedSink)
    assert not isinstance(kafka.metrics_sink, StartedSink)


def test_a_hand_off_keeps_order_and_holds_the_thread_only_while_it_is_full() -> None:
    """Items reach the loop in the order the thread put them; with `size` untaken the thread
    waits, and one taken lets the next one through."""
    loop = asyncio.new_event_loop()
    try:
        handoff: Handoff[int] = Handoff(loop, 2)
        progress: list[int] = []

        def client() -> None:
            for i in range(5):
                assert handoff.put(i, give_up=lambda: False, timeout=10)
                progress.append(i)

        thread = threading.Thread(target=client)
        thread.start()

        async def take() -> list[int]:
            deadline = time.monotonic() + 5
            while len(progress) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the loop runs the thread's call_soon_threadsafe
            assert progress == [0, 1]  # full: the third waits for room
            got = [await handoff.get() for _ in range(5)]
            return got

        assert loop.run_until_complete(take()) == [0, 1, 2, 3, 4]
        thread.join(5)
        assert not thread.is_alive() and progress == [0, 1, 2, 3, 4]
    finally:
        loop.close()


def test_a_hand_off_to_a_loop_that_closed_gives_up_quietly() -> None:
    """A client thread's item, handed off while the event loop closes (shutdown), is dropped
    without an error or a warning, and the thread does not hang on the lost room."""
    loop = asyncio.new_event_loop()
    handoff: Handoff[int] = Handoff(loop, 1)
    assert handoff.put(1, give_up=lambda: False)  # the one room: taken, never read
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(handoff.put(2, lambda: False)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread.start()
        loop.close()
        thread.join(5)
        gc.collect()
    assert not thread.is_alive() and results == [False]
    assert not handoff.put(3, give_up=lambda: False)  # room or not, nobody reads any more
    assert not caught


def test_a_hand_off_gives_up_when_told_or_at_its_timeout() -> None:
    loop = asyncio.new_event_loop()
    try:
        handoff: Handoff[int] = Handoff(loop, 1)
        assert handoff.put(1, give_up=lambda: False)
        assert not handoff.put(2, give_up=lambda: True)
        started = time.monotonic()
        assert not handoff.put(2, give_up=lambda: False, timeout=0.2)
        assert time.monotonic() - started < 2
    finally:
        loop.close()


class _FlakyConsumer:
    """Stands in for kafka-python's consumer: the first poll fails, the next ones work."""

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[object, list[object]]:
        self.polls += 1
        if self.polls == 1:
            raise ConnectionError("broker away")
        return {}

    def assignment(self) -> set[object]:
        return set()


def test_the_consumers_error_ends_when_what_failed_works_again() -> None:
    """The figures show an error while it lasts: a failed poll until a poll works, a failed
    commit until a commit works (each logged once, not at every turn)."""
    from stockup_tui.engine.bus.kafka.consumer import KafkaReader

    loop = asyncio.new_event_loop()
    try:
        reader = KafkaReader(Settings().kafka, Handoff(loop, 4))
        consumer = _FlakyConsumer()
        reader._step(consumer)
        assert reader.last_error is not None and "poll failed" in reader.last_error
        reader._step(consumer)
        assert reader.last_error is None
        reader._commit_done({}, time.monotonic(), TimeoutError("coordinator moving"))
        assert reader.last_error is not None and "commit failed" in reader.last_error
        reader._step(consumer)  # a poll that works says nothing about commits
        assert reader.last_error is not None and "commit failed" in reader.last_error
        reader._commit_done({}, time.monotonic(), None)
        assert reader.last_error is None
    finally:
        loop.close()


class _Sender:
    def __init__(self) -> None:
        self.wakeups = 0

    def wakeup(self) -> None:
        self.wakeups += 1


class _Client:
    """Stands in for kafka-python's producer: `send` wakes the sender, as it does when a
    record opens a batch."""

    def __init__(self) -> None:
        self._sender = _Sender()

    def send(self) -> None:
        self._sender.wakeup()


def test_a_block_of_sends_wakes_the_sender_once_at_its_end() -> None:
    from stockup_tui.engine.bus.kafka.producer import sender_woken_once

    client = _Client()
    with sender_woken_once(client):
        for _ in range(6):
            client.send()
        assert client._sender.wakeups == 0
    assert client._sender.wakeups == 1
    client.send()  # the sender's own wakeup is back
    assert client._sender.wakeups == 2
    with sender_woken_once(client):
        pass  # nothing sent: nobody to wake
    assert client._sender.wakeups == 2
    try:
        with sender_woken_once(client):
            client.send()
            raise RuntimeError("a send failed")
    except RuntimeError:
        pass
    assert client._sender.wakeups == 3  # what was sent before the failure still leaves
    with sender_woken_once(object()):  # a client laid out otherwise: left as it is
        pass

    class Slotted:
        __slots__ = ("wakeups",)

        def __init__(self) -> None:
            self.wakeups = 0

        def wakeup(self) -> None:
            self.wakeups += 1

    slotted = _Client()
    slotted._sender = Slotted()  # type: ignore[assignment]
    with sender_woken_once(slotted):
        slotted.send()
    assert slotted._sender.wakeups == 1  # woken at every send, as before


class _Future:
    def add_callback(self, *args: object) -> None:
        pass

    def add_errback(self, *args: object) -> None:
        pass


class _RecordingClient:
    """Stands in for kafka-python's producer: remembers when each record was handed to it."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, **kw: object) -> _Future:
        value = kw["value"]
        assert isinstance(value, bytes)
        self.sent.append((time.monotonic(), value))
        return _Future()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


async def test_records_nobody_waits_on_are_gathered_and_an_urgent_one_takes_them_along() -> None:
    from stockup_tui.engine.bus.kafka import producer as producer_module

    client = _RecordingClient()
    pub = KafkaPublisher(Settings().kafka, buffer_bytes=1 << 20)
    pub._producer = lambda: client  # type: ignore[method-assign]
    pub.start()
    try:
        first = time.monotonic()
        assert pub.offer([Outgoing("m", b"A", b"snap-1")], gather=True) == []
        assert pub.offer([Outgoing("m", b"B", b"snap-2")], gather=True) == []
        await wait_for_thread(lambda: len(client.sent) == 2, what="the gathered pair")
        (t1, v1), (t2, v2) = client.sent
        assert (v1, v2) == (b"snap-1", b"snap-2")
        assert t1 - first >= producer_module.GATHER_S - 0.005  # held,
        assert t2 - t1 < producer_module.GATHER_S  # then sent together
        client.sent.clear()
        offered = time.monotonic()
        assert pub.offer([Outgoing("m", b"A", b"snap-3")], gather=True) == []
        assert pub.offer([Outgoing("t", b"K", b"trades")]) == []  # urgent: both go now
        await wait_for_thread(lambda: len(client.sent) == 2, what="the urgent record")
        assert [v for _, v in client.sent] == [b"snap-3", b"trades"]
        assert client.sent[0][0] - offered < producer_module.GATHER_S
    finally:
        pub.close(0.0)  # the stand-in acknowledges nothing: nothing to wait for


async def wait_for_thread(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)
