"""The Apache Kafka bus (kafka-python): keyed batches on a partitioned topic, consumed in a group.

Publishing goes through `KafkaPublisher` (bounded outbox, idempotent producer, acks=all),
consuming through `KafkaReader` (commits after the analyzer's effects, watermark in the commit
metadata, instant recovery on every assignment). Both run their client on their own thread;
this class is the asyncio face the pipeline sees, and turns their counters into `BusStats`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import orjson
from kafka.partitioner.default import murmur2

from stockup_tui.config import Settings, normalize_symbol
from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.base import ALL_PARTITIONS, BusStats, Delivery, Message
from stockup_tui.engine.bus.kafka.common import Handoff
from stockup_tui.engine.bus.kafka.consumer import DRAIN_TIMEOUT_S, KafkaReader
from stockup_tui.engine.bus.kafka.member import InstanceId, claim_instance_id
from stockup_tui.engine.bus.kafka.metrics import KafkaMetricsSink
from stockup_tui.engine.bus.kafka.producer import KafkaPublisher, Outgoing
from stockup_tui.engine.bus.kafka.watch import TopicWatcher
from stockup_tui.engine.codec import GROUP_KEY, CodecError, decode_snapshot
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.stats import (
    KafkaFigures,
    KafkaGroupFigures,
    KafkaProducerFigures,
    PartitionLag,
)

log = logging.getLogger(__name__)

CONTROL_KEY = b"watchlist"
#: Deliveries the consumer thread may have handed over that the analyzer has not taken yet.
DELIVERIES_AHEAD = 4
MAX_CONTROL_SYMBOLS = 1000


def parse_control(value: bytes) -> list[str]:
    """A control-topic watchlist, validated like the config's; ValueError says what is wrong."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"control message is not JSON: {exc}") from None
    if type(obj) is not dict or obj.get("v") != 1 or type(obj.get("symbols")) is not list:
        raise ValueError('control message must be {"v": 1, "symbols": [...]}')
    symbols = obj["symbols"]
    if len(symbols) > MAX_CONTROL_SYMBOLS or not all(type(s) is str for s in symbols):
        raise ValueError("control symbols must be at most 1000 strings")
    return list(dict.fromkeys(normalize_symbol(s) for s in symbols))


def _behind(lag: int, last_ts: int | None, now_ms: float) -> float | None:
    """Seconds a partition's reader is behind: 0 when caught up, else the age of the newest
    record it read (unknown before the first)."""
    if lag == 0:
        return 0.0
    return None if last_ts is None or last_ts < 0 else max(0.0, (now_ms - last_ts) / 1000)


#: Symbols whose partition `route` remembers (a replay of any number of symbols stays bounded).
MAX_ROUTES = 100_000
#: How long `publish` waits for room in a full outbox while the broker is answering.
PUBLISH_BLOCK_S = 1.0
#: At shutdown, how long the broker has to acknowledge what is queued (it may be coming back).
PUBLISH_DRAIN_S = 15.0


class KafkaBus:
    def __init__(
        self,
        settings: Settings,
        drops: Drops,
        *,
        publish: bool = True,
        consume: bool = True,
    ) -> None:
        self.cfg = settings.kafka
        self.drops = drops
        self._publishes = publish
        self._consumes = consume
        self.member: InstanceId | None = None
        # The analyzer needs a producer too: for the metrics and dead-letter topics.
        self.publisher = KafkaPublisher(self.cfg, settings.bus.buffer_bytes)
        self.reader: KafkaReader | None = None
        # Emitted snapshots go to the metrics topic (role all/analyzer), at least once.
        self.metrics_sink = KafkaMetricsSink(self.cfg, self.publisher, drops) if consume else None
        self._deliveries: Handoff[Delivery | None] | None = None  # from the consumer thread
        self._started = False
        self._closed = False
        self._stats = BusStats(
            kind="kafka", queue_capacity=settings.bus.buffer_bytes, queue_unit="bytes"
        )
        self.dead_lettered = 0
        self._watchers: list[TopicWatcher] = []
        # The status record that says "stopped", sent after the consumer has left (pipeline).
        self.farewell: tuple[bytes, bytes] | None = None
        self._routes: dict[bytes, int] = {}  # symbol key -> partition (see `route`)
        self._routes_for = 0  # the partition count `_routes` was computed for
        self._farewell_sent = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.publisher.start()
        if self._consumes:
            self.member = claim_instance_id(self.cfg)
            self._deliveries = Handoff(asyncio.get_running_loop(), DELIVERIES_AHEAD)
            self.reader = KafkaReader(self.cfg, self._deliveries, member=self.member)
            self.reader.start()

    async def close(self) -> None:
        """Sends what this process published, lets the consumer read it (role all), commits and
        stops it, then sends what the analyzer wrote meanwhile (snapshots) and stops."""
        if self._closed:
            return
        self._closed = True
        stats = self.stats
        away = False  # the broker did not take our trades and is not even connected
        if self._publishes:
            stats.closing = "sending"
            sent = await asyncio.to_thread(self.publisher.flush, PUBLISH_DRAIN_S)
            reader = self.reader
            away = not sent and not self.publisher.connected and not (reader and reader.connected)
        if self.reader is not None:
            wait = DRAIN_TIMEOUT_S + 15
            if self._publishes and not away:
                stats.closing = "reading what was sent, then committing"
                self.reader.drain_and_stop()
            else:  # nothing to wait for: what the broker did not take, no consumer will read
                stats.closing = "committing and leaving the consumer group"
                self.reader.stop()
                if away:
                    wait = 5  # it did not take our trades: it will not take a commit either
            # Returns once the analyzer acknowledged every delivery and the last commit is done.
            await asyncio.to_thread(self.reader.join, wait)
            if self.reader.alive:  # stuck on a broker that is away: end the stream without it
                log.warning("Kafka consumer: not stopped after %.0fs; leaving it behind", wait)
                if self._deliveries is not None:
                    self._deliveries.end(None)
        stats.closing = "sending the last snapshots"
        if self.farewell is not None:
            self.publish_status(*self.farewell)
            self._farewell_sent = True  # nothing may follow it
        # A broker away after PUBLISH_DRAIN_S is not waited for again.
        ok = await asyncio.to_thread(self.publisher.close, 0.0 if away else PUBLISH_DRAIN_S)
        if not ok and self.publisher.unacked_trades:
            self.drops.add(
                "bus_unsent_at_exit",
                self.publisher.unacked_trades,
                detail="Kafka did not acknowledge them before shutdown",
            )
        for watcher in self._watchers:
            watcher.stop()

    def unsent_trades(self) -> int:
        return self.publisher.unacked_trades if self._publishes else 0

    # -- publishing ------------------------------------------------------------------------

    def route(self, key: bytes) -> int | None:
        """The default partitioner's choice (murmur2 of the key), as the client would make it
        for a keyed message: a symbol stays on its partition whichever way it is sent."""
        n = self.publisher.partition_count
        if not n:
            return None
        routes = self._routes
        if self._routes_for != n or len(routes) > MAX_ROUTES:  # the topic changed size
            routes.clear()
            self._routes_for = n
        part = routes.get(key)
        if part is None:  # murmur2 is pure Python: once per symbol, not per flush
            part = routes[key] = (murmur2(key) & 0x7FFFFFFF) % n
        return part

    async def publish(self, messages: Sequence[Message]) -> None:
        topic = self.cfg.topic
        items = [
            Outgoing(topic, m.key, m.payload, None, m.trades)
            if m.partition != ALL_PARTITIONS and m.key != GROUP_KEY
            else Outgoing(topic, m.key or None, m.payload, None, m.trades, partition=m.partition)
            for m in messages
        ]
        rest = self.publisher.offer(items)
        if rest:
            deadline = time.monotonic() + PUBLISH_BLOCK_S
            while rest and self.publisher.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # back-pressure while the broker drains the outbox
                rest = self.publisher.offer(rest)
            if rest:
                self.drops.add(
                    "bus_buffer_full",
                    sum(item.trades for item in rest),
                    detail=f"Kafka outbox full ({self.publisher.buffer_bytes:,} bytes)",
                )

    async def dead_letter(self, message: Message, reason: str) -> None:
        headers = [("reason", reason.encode()), ("partition", str(message.partition).encode())]
        item = Outgoing(self.cfg.dead_letter_topic, message.key or None, message.payload, headers)
        if self.publisher.offer([item]):
            self.drops.add("dead_letter_full", detail="Kafka outbox full")
        else:
            self.dead_lettered += 1

    # -- consuming -------------------------------------------------------------------------

    async def consume(self) -> AsyncIterator[Delivery]:
        deliveries = self._deliveries
        if self.reader is None or deliveries is None:
            return
        while True:
            item = await deliveries.get()
            if item is None:
                return
            yield item

    async def ack(self, delivery: Delivery, checkpoints: Mapping[int, Checkpoint]) -> None:
        if self.reader is not None and isinstance(delivery.token, dict):
            self.reader.ack(delivery.token, checkpoints)

    # -- the metrics and control topics ----------------------------------------------------

    async def _watch(
        self, topic: str, start_ms: int | None
    ) -> AsyncIterator[list[tuple[bytes, int]]]:
        """Batches of (value, Kafka timestamp in ms) from every partition of `topic`."""
        watcher = TopicWatcher(self.cfg, topic, asyncio.get_running_loop(), start_ms)
        self._watchers.append(watcher)
        watcher.start()
        try:
            while True:
                batch = await watcher.batches.get()
                if batch is None:
                    return
                yield batch
        finally:
            watcher.stop()

    async def watch_metrics(self, since_ms: int) -> AsyncIterator[list[SymbolSnapshot]]:
        """Snapshots the analyzers commit to the metrics topic, from `since_ms` on (monitor)."""
        async for batch in self._watch(self.cfg.metrics_topic, since_ms):
            snaps = []
            for value, _ in batch:
                try:
                    snaps.append(decode_snapshot(value))
                except CodecError as exc:
                    self.drops.add(f"metrics_{exc.reason}", detail=str(exc))
            if snaps:
                yield snaps

    async def watch_control(self) -> AsyncIterator[list[str]]:
        """Watchlists published by any screen, the latest one first (query role)."""
        async for batch in self._watch(self.cfg.control_topic, None):
            latest = None
            for value, _ in batch:
                try:
                    latest = parse_control(value)
                except ValueError as exc:
                    self.drops.add("control_invalid", detail=str(exc))
            if latest is not None:
                yield latest

    def publish_control(self, symbols: list[str]) -> None:
        """Sends the watchlist to the query process (compacted topic, one key)."""
        value = orjson.dumps({"v": 1, "symbols": symbols})
        if self.publisher.offer([Outgoing(self.cfg.control_topic, CONTROL_KEY, value)]):
            self.drops.add("control_full", detail="Kafka outbox full")

    async def watch_status(self, since_ms: int) -> AsyncIterator[list[tuple[bytes, int]]]:
        """Every process's status records from `since_ms` on, with their Kafka timestamps
        (the monitor's cluster view parses them: they are untrusted)."""
        async for batch in self._watch(self.cfg.status_topic, since_ms):
            yield batch

    def instance(self) -> str:
        return (self.member.value or "") if self.member is not None else ""

    def publish_status(self, key: bytes, value: bytes) -> None:
        """One status record of this process (`engine/cluster.py`); a full outbox skips it
        (the next one follows in an interval), counted."""
        if self._farewell_sent:
            return
        if self.publisher.offer([Outgoing(self.cfg.status_topic, key, value)], gather=True):
            self.drops.add("status_full", detail="Kafka outbox full")

    # -- health ----------------------------------------------------------------------------

    @property
    def stats(self) -> BusStats:
        """Refreshed from the client threads' counters when read (once a second)."""
        st = self._stats
        pub = self.publisher
        rd = self.reader
        st.connected = (pub.connected or not self._publishes) and (rd is None or rd.connected)
        st.published_messages = pub.acked_main  # acknowledged by the broker
        st.publish_errors = pub.errors
        st.queue_depth = pub.pending_bytes
        st.consumed_messages = rd.consumed if rd else 0
        st.last_error = pub.last_error or (rd.last_error if rd else None)
        producer = group = None
        if self._publishes:
            lat = pub.take_latency()
            producer = KafkaProducerFigures(
                acked=pub.acked,
                in_flight=pub.in_flight,
                resent=pub.resent,
                retries_per_s=pub.retry_rate(),
                ack_p50=lat.percentile(0.5),
                ack_p99=lat.percentile(0.99),
            )
        if rd is not None:
            lag = tuple(sorted(rd.lag.items()))
            group = KafkaGroupFigures(
                group_id=self.cfg.group_id,
                member=rd.instance_id,
                assignment=tuple(rd.assignment),
                lag=lag,
                commits=rd.commits,
                commit_p50=rd.commit_latency.percentile(0.5),
                commit_errors=rd.commit_errors,
            )
            st.backlog = group.lag_total
            now_ms = time.time() * 1000
            st.partitions = tuple(
                PartitionLag(p, n, _behind(n, rd.last_ts.get(p), now_ms)) for p, n in lag
            )
        st.detail = KafkaFigures(
            brokers=tuple(self.cfg.bootstrap_servers),
            topic=self.cfg.topic,
            topic_partitions=self.cfg.partitions,
            dead_lettered=self.dead_lettered,
            producer=producer,
            group=group,
        )
        return st
