"""The Kafka consuming side: one thread owns the KafkaConsumer, the event loop gets deliveries.

Offsets are committed only for deliveries the analyzer has acknowledged (its effects done), with
the analyzer's checkpoint in the commit metadata: the offset to replay from and the watermark
there. When a partition is assigned (start-up or a rebalance), the reader looks that metadata up,
seeks the partition to the checkpoint's offset, tells the analyzer to start the partition afresh
at its watermark (`Delivery.starts`) and delivers everything before the committed offset with
`replay=True`: the analyzer rebuilds exactly the state it had, without emitting, and its next
snapshots are the ones it would have emitted anyway. A partition without a commit (a new group)
is read from its beginning: the whole retained log, so a new analyzer emits the same history as
any other.

Commits lag behind what the analyzer has emitted (they go at most every COMMIT_EVERY_S, and only
for deliveries it has finished), so a rebalance that hands a partition back to this process (the
group changed, a rejoin after a session that expired under load, or kafka-python's own rejoin
right after the first assignment of a new member) rewinds it to a commit older than what this
process has already emitted. The reader remembers, per partition, the last record it handed to
the analyzer; the analyzer takes the deliveries in order and the revocation after them, so
everything up to that record has been emitted here: it is replayed too, not emitted twice. A
partition that moves to another process is read there from the last commit: what this process
emitted after it is emitted again there (at least once). Committing in the rebalance listener
would not close that gap: deliveries still queued for the analyzer have no checkpoint yet, and
kafka-python 3 runs the listener on its IO thread, where `commit()` raises.

Membership is static by default (`group_instance_id`, see `kafka/member.py`): a restarted
analyzer gets its partitions back at once instead of waiting for the session timeout, and a
planned stop removes it from the group at once (static members do not leave by themselves).

Longer than most modules on purpose: commits, rebalances and recovery are one protocol around
kafka-python's consumer, kept together so that its rules (above) can be checked in one read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.analyzer.partition import Checkpoint
from stockup_tui.engine.bus.base import Delivery, Message
from stockup_tui.engine.bus.kafka.common import (
    Handoff,
    backoff,
    client_config,
    describe_error,
    ensure_topics,
    servers,
)
from stockup_tui.engine.bus.kafka.member import InstanceId
from stockup_tui.engine.latency import LatencyHistogram
from stockup_tui.engine.resilience import ErrorLatch

log = logging.getLogger(__name__)

LAG_EVERY_S = 2.0
#: Commit at most this often. A commit is a round trip through the client's threads (about a
#: millisecond of CPU here, whatever it carries); committing more often only shortens what is
#: read again after a crash or a rebalance, and replays change no output.
COMMIT_EVERY_S = 1.0
#: A commit unanswered for this long is given up on (its answer may still come): the next goes.
COMMIT_STUCK_S = 10.0
DRAIN_TIMEOUT_S = 15.0
#: How long the broker holds a fetch while the topic is quiet (data ends it at once), and how
#: long a poll waits for records (also how soon a stop is seen). Every empty answer and every
#: poll is a few round trips between the client's threads (2-3 ms of CPU): at 100 ms an idle
#: analyzer took 27 ms of CPU a second, and at 3,000 trades/s a third of its fetches were empty
#: answers racing the query's flushes (one every 100 ms).
IDLE_FETCH_MS = 500
POLL_MS = 500


METADATA_VERSION = 2


def checkpoint_metadata(cp: Checkpoint) -> str:
    """The commit metadata holding a checkpoint (well under the broker's 4 KiB limit)."""
    data: dict[str, int] = {"v": METADATA_VERSION, "r": cp.replay_from}
    if cp.watermark_ms is not None:
        data["w"] = cp.watermark_ms
    return orjson.dumps(data).decode()


def checkpoint_of(metadata: str | None, committed: int) -> Checkpoint | None:
    """The checkpoint stored with a commit at offset `committed`, or None (none, not ours, or
    from an older version)."""
    if not metadata:
        return None
    try:
        data = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("v") != METADATA_VERSION:
        return None
    start, wm = data.get("r"), data.get("w")
    if type(start) is not int or not 0 <= start <= committed:
        return None
    if wm is not None and (type(wm) is not int or wm <= 0):
        return None
    return Checkpoint(start, wm)


class KafkaReader:
    """Owns the consumer thread. Deliveries go to the event loop through `deliveries`; `None`
    ends the stream."""

    def __init__(
        self,
        cfg: KafkaConfig,
        deliveries: Handoff[Delivery | None],
        member: InstanceId | None = None,
    ) -> None:
        self.cfg = cfg
        self._member = member
        self.instance_id = member.value if member else None  # static membership (None: dynamic)
        self._deliveries = deliveries
        self._lock = threading.Lock()
        self._acked: dict[int, tuple[int, Checkpoint]] = {}  # partition -> (next offset, cp)
        self._delivered = 0
        self._acks = 0
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._revoked: list[int] = []
        self._assigned: list[Any] = []  # TopicPartitions assigned, not yet recovered
        self._replay_until: dict[int, int] = {}  # offsets before this are replays
        # Partition -> the offset after the last record handed to the analyzer (all emitted
        # before a later revocation reaches it); kept across revocations.
        self._handed: dict[int, int] = {}
        self._starts: dict[int, int | None] = {}  # partitions rewound, for the next delivery
        self._thread: threading.Thread | None = None
        self.connected = False
        # One latch per kind of call, each cleared by that call's next success, so that the
        # figures stop showing an error once it is over (and one failing while another works
        # is logged once, not at every turn): the link (join, poll), commits, lag queries.
        self._errors = ErrorLatch(log, "Kafka consumer: %(error)s")
        self._commit_errors = ErrorLatch(log, "Kafka consumer: %(error)s")
        self._lag_errors = ErrorLatch(log, "Kafka consumer: %(error)s")
        self.assignment: tuple[int, ...] = ()  # partitions owned and already rewound
        self.lag: dict[int, int] = {}
        # Kafka timestamp (ms) of the newest record delivered, per partition: how far behind.
        self.last_ts: dict[int, int] = {}
        self.consumed = 0
        self.commits = 0
        self.commit_errors = 0
        self.rebalances = 0
        self.commit_latency = LatencyHistogram()
        self._commit_sent_at = 0.0  # monotonic time of the asynchronous commit in flight
        # Partition -> highest offset committed (by this process, or found at an assignment).
        self._committed: dict[int, int] = {}
        self._lag_at = 0.0
        self._committed_at = 0.0

    # -- event-loop side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-consumer", daemon=True)
        self._thread.start()

    def ack(self, token: dict[int, int], checkpoints: Mapping[int, Checkpoint]) -> None:
        with self._lock:
            for partition, offset in token.items():
                cp = checkpoints.get(partition)
                # A replay of what is committed, or of what is about to be: the commit there
                # already says more than this one would (commits never go back).
                pending = self._acked.get(partition)
                floor = max(self._committed.get(partition, -1), pending[0] if pending else -1)
                if cp is not None and offset + 1 > floor:
                    self._acked[partition] = (offset + 1, cp)
            self._acks += 1

    def drain_and_stop(self) -> None:
        """Consume up to the end offsets as of now, commit, then end the stream."""
        self._drain.set()

    def stop(self) -> None:
        """Commit what was acknowledged and end the stream now."""
        self._stop.set()

    @property
    def last_error(self) -> str | None:
        """The error in force now (None once what failed works again)."""
        return self._errors.error or self._commit_errors.error or self._lag_errors.error

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Waits for the consumer thread to end (the last deliveries acknowledged, committed)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # -- consumer thread -------------------------------------------------------------------

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        session_ms = round(self.cfg.session_timeout * 1000)
        return KafkaConsumer(
            **client_config(self.cfg),
            group_id=self.cfg.group_id,
            group_instance_id=self.instance_id,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 4),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=2000,
            # The broker answers a fetch as soon as it has data; this bounds an empty one.
            fetch_max_wait_ms=IDLE_FETCH_MS,
            metadata_max_age_ms=30_000,
            metrics_enabled=False,  # its sensors are a tenth of each poll's cost; unread
        )

    def _run(self) -> None:
        consumer = None
        retry = backoff()
        try:
            while not self._stop.is_set():
                if consumer is None and self._drain.is_set():
                    return  # never connected: nothing to drain
                if consumer is None:
                    try:
                        ensure_topics(self.cfg)
                        consumer = self._consumer()
                        # Subscribed first, so that the metadata the wait below fetches is the
                        # one the group's assignment is checked against; subscribed after it,
                        # kafka-python saw its topic appear later and rejoined the group once
                        # right after the first assignment (a rebalance for nothing).
                        consumer.subscribe([self.cfg.topic], listener=_listener(self))
                        self._wait_for_partitions(consumer)
                    except Exception as exc:
                        if consumer is not None:
                            consumer.close(autocommit=False)
                        self._error(exc, f"cannot join {self.cfg.group_id} at {servers(self.cfg)}")
                        consumer = None
                        self._stop.wait(retry.next())
                        continue
                    retry.reset()
                    log.info("Kafka consumer joined group %s", self.cfg.group_id)
                if self._drain.is_set():
                    self._drain_to_end(consumer)
                    return
                self._step(consumer)
        finally:
            self._finish(consumer)

    def _wait_for_partitions(self, consumer: Any, timeout: float = 15.0) -> None:
        """Joining before the topic's metadata is known gets an empty assignment until the next
        metadata refresh; a topic created a moment ago shows up within a second or so."""
        deadline = time.monotonic() + timeout
        while not consumer.partitions_for_topic(self.cfg.topic):
            if time.monotonic() > deadline or self._stop.is_set():
                raise RuntimeError(f"topic {self.cfg.topic} has no partitions")
            self._stop.wait(0.1)

    def _step(self, consumer: Any) -> None:
        self._commit(consumer)
        try:
            records = consumer.poll(timeout_ms=POLL_MS, max_records=2000)
        except Exception as exc:
            if type(exc).__name__ == "FencedInstanceIdError":
                self._error(
                    exc,
                    f"another analyzer of group {self.cfg.group_id} joined with the static id "
                    f"{self.instance_id!r} (two hosts with one name?): give each process its "
                    "own kafka.instance_id",
                )
            else:
                self._error(exc, "poll failed")
            self.connected = False
            self._stop.wait(0.5)
            return
        self.connected = True
        self._errors.clear()
        if self._assigned:
            # Records fetched for a partition assigned during this poll start from the committed
            # offset; recovery rewinds them first, so they are fetched again after the seek.
            fresh = {tp.partition for tp in self._assigned}
            records = {tp: recs for tp, recs in records.items() if tp.partition not in fresh}
            try:
                self._recover(consumer)
            except Exception as exc:  # the coordinator moving, the broker away: next poll
                self._error(exc, "rewinding assigned partitions failed; retrying")
        self._deliver(records)
        self._refresh_lag(consumer)

    def _deliver(self, records: dict[Any, list[Any]]) -> None:
        revoked = tuple(self._revoked)
        self._revoked.clear()
        starts, self._starts = self._starts, {}
        if not records and not revoked and not starts:
            return
        messages: list[Message] = []
        token: dict[int, int] = {}
        for tp, recs in records.items():
            part = tp.partition
            until = self._replay_until.get(part, -1)
            for rec in recs:
                messages.append(
                    Message(
                        rec.key or b"", rec.value or b"", 0, part, rec.offset < until, rec.offset
                    )
                )
            token[part] = recs[-1].offset
            self._handed[part] = recs[-1].offset + 1
            self.last_ts[part] = recs[-1].timestamp
        self.consumed += len(messages)
        delivery = Delivery(messages=messages, token=token, revoked=revoked, starts=starts)
        self._delivered += 1
        self._put(delivery)

    def _put(self, item: Delivery | None) -> None:
        """Hands an item to the event loop, waiting while its queue is full (back-pressure)."""
        self._deliveries.put(item, give_up=lambda: False)

    def _commit(self, consumer: Any, force: bool = False) -> None:
        """Commits acknowledged offsets at most every COMMIT_EVERY_S, asynchronously: this
        thread never waits on the coordinator (it must keep polling: a member that stops
        polling in a rebalance holds the whole group up). `force` (the last one) waits."""
        now = time.monotonic()
        if not force:
            if now - self._committed_at < COMMIT_EVERY_S:
                return
            if self._commit_sent_at and now - self._commit_sent_at < COMMIT_STUCK_S:
                return  # one commit in flight at a time (they stay in order)
        self._committed_at = now
        with self._lock:
            acked, self._acked = self._acked, {}
        if not acked:
            return
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        assigned = {tp.partition for tp in consumer.assignment()}
        sent = {part: value for part, value in acked.items() if part in assigned}
        offsets = {
            TopicPartition(self.cfg.topic, part): OffsetAndMetadata(
                offset, checkpoint_metadata(cp), -1
            )
            for part, (offset, cp) in sent.items()
        }
        if not offsets:
            return
        if force:
            try:
                consumer.commit(offsets, timeout_ms=5000)
            except Exception as exc:
                self._commit_done(sent, now, exc)
            else:
                self._commit_done(sent, now, None)
            return
        self._commit_sent_at = now

        def done(_offsets: Any, response: Any) -> None:  # on this thread, from poll()
            self._commit_sent_at = 0.0
            self._commit_done(sent, now, response if isinstance(response, Exception) else None)

        try:
            consumer.commit_async(offsets, callback=done)
        except Exception as exc:
            done(offsets, exc)

    def _commit_done(
        self, sent: dict[int, tuple[int, Checkpoint]], started: float, error: Exception | None
    ) -> None:
        if error is None:
            self._commit_errors.clear()
            self.commits += 1
            self.commit_latency.record(time.monotonic() - started, 1)
            for part, (offset, _) in sent.items():
                if offset > self._committed.get(part, -1):
                    self._committed[part] = offset
            return
        # A rebalance in progress, the broker away: the next commit carries these, unless a
        # later one has already said more.
        self.commit_errors += 1
        self._commit_errors.set(f"commit failed: {describe_error(error)}")
        with self._lock:
            for part, value in sent.items():
                if value[0] > self._committed.get(part, -1):
                    self._acked.setdefault(part, value)

    def _refresh_lag(self, consumer: Any, force: bool = False) -> None:
        """Records behind the end of each owned partition. The end is the high watermark the
        last fetch answered with (no request of its own, the norm); a partition not fetched
        yet asks the broker."""
        now = time.monotonic()
        if not force and now - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = now
        assigned = [tp for tp in consumer.assignment() if tp.partition in self._replay_until]
        if not assigned:
            self.lag = {}
            return
        try:
            ends = {tp: consumer.highwater(tp) for tp in assigned}
            unknown = [tp for tp, end in ends.items() if end is None]
            if unknown:
                ends.update(consumer.end_offsets(unknown))
            self.lag = {tp.partition: max(0, ends[tp] - consumer.position(tp)) for tp in assigned}
        except Exception as exc:
            self._lag_errors.set(f"lag query failed: {describe_error(exc)}")
        else:
            self._lag_errors.clear()

    def _drain_to_end(self, consumer: Any) -> None:
        """Role `all` at shutdown: read what this process published, then stop."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        targets: dict[Any, int] | None = None
        while time.monotonic() < deadline:
            self._step(consumer)
            assigned = list(consumer.assignment())
            if not assigned:
                continue
            if targets is None:
                try:
                    targets = consumer.end_offsets(assigned)
                except Exception as exc:
                    self._error(exc, "end offsets failed")
                    continue
            if all(consumer.position(tp) >= end for tp, end in targets.items()):
                break
        else:
            log.warning("Kafka consumer: drain stopped after %.0fs", DRAIN_TIMEOUT_S)

    def _finish(self, consumer: Any) -> None:
        if consumer is not None:
            deadline = time.monotonic() + 10
            while self._acks < self._delivered and time.monotonic() < deadline:
                time.sleep(0.01)  # the analyzer finishes the last delivery it was given
            self._commit(consumer, force=True)
            try:
                consumer.close(autocommit=False)
            except Exception as exc:
                self._error(exc, "close failed")
            if self.instance_id is not None:
                self._leave_group()
        if self._member is not None:
            self._member.release()  # the next analyzer on this host may take the id
        self.connected = False
        self._put(None)  # the end of the stream (dropped quietly if the loop has closed)

    def _leave_group(self) -> None:
        """A static member stays in the group until its session times out; a planned stop
        removes it now, so that the others take its partitions at once."""
        from kafka import KafkaAdminClient
        from kafka.admin import MemberToRemove

        try:
            admin = KafkaAdminClient(**client_config(self.cfg))
            try:
                admin.remove_group_members(
                    self.cfg.group_id, [MemberToRemove(group_instance_id=self.instance_id)]
                )
            finally:
                admin.close()
            log.info("Kafka consumer: left group %s (%s)", self.cfg.group_id, self.instance_id)
        except Exception as exc:  # the others take over after the session timeout instead
            self._error(exc, "leaving the group failed")

    def _error(self, exc: BaseException, what: str) -> None:
        self._errors.set(f"{what}: {describe_error(exc)}")

    # -- rebalance -----------------------------------------------------------------------
    # kafka-python calls the listener on its IO thread inside poll(), where blocking client
    # calls are not allowed: the listener only records the change, `_step` acts after poll.

    def on_revoked(self, revoked: list[Any]) -> None:
        self.rebalances += 1
        parts = [tp.partition for tp in revoked]
        for part in parts:
            self._replay_until.pop(part, None)
        self._revoked.extend(parts)
        gone = set(parts)
        self._assigned = [tp for tp in self._assigned if tp.partition not in gone]
        self.assignment = tuple(p for p in self.assignment if p not in gone)

    def on_assigned(self, assigned: list[Any]) -> None:
        self._assigned.extend(assigned)

    def _recover(self, consumer: Any) -> None:
        """Rewinds newly assigned partitions to their checkpoints and replays what is committed
        or was emitted here already (see the module docstring)."""
        assigned = list(self._assigned)  # cleared only once every call below has worked
        plan: dict[Any, tuple[int | None, int, int | None]] = {}  # tp -> (seek, until, wm)
        found: dict[int, int] = {}  # partition -> committed offset
        for tp in assigned:
            committed = consumer.committed(tp, metadata=True)
            if committed is None or committed.offset < 0:
                plan[tp] = (None, -1, None)  # a new group: the partition from its beginning
                continue
            found[tp.partition] = committed.offset
            cp = checkpoint_of(committed.metadata, committed.offset)
            if cp is None:
                log.warning(
                    "Kafka partition %d: the commit at offset %d holds no checkpoint of this "
                    "version; going on from there with empty windows",
                    tp.partition,
                    committed.offset,
                )
                plan[tp] = (committed.offset, committed.offset, None)
            else:
                plan[tp] = (cp.replay_from, committed.offset, cp.watermark_ms)
        first = [tp for tp, (seek, _, _) in plan.items() if seek is None]
        if first:
            consumer.seek_to_beginning(*first)
        for tp, (seek, until, wm) in plan.items():
            if seek is not None:
                consumer.seek(tp, seek)
            self._replay_until[tp.partition] = max(until, self._handed.get(tp.partition, -1))
            self._starts[tp.partition] = wm
        with self._lock:  # another process may have committed more since this one last did
            for part, offset in found.items():
                if offset > self._committed.get(part, -1):
                    self._committed[part] = offset
                pending = self._acked.get(part)
                if pending is not None and pending[0] <= self._committed[part]:
                    del self._acked[part]
        replaying = {}
        for tp, (seek, _, _) in plan.items():
            until = self._replay_until[tp.partition]
            if until > (seek or 0):
                replaying[tp.partition] = f"{'start' if seek is None else seek}..{until}"
        log.info(
            "Kafka partitions assigned: %s (replaying %s)",
            sorted(tp.partition for tp in assigned),
            replaying,
        )
        done = {tp.partition for tp in assigned}
        self._assigned = [tp for tp in self._assigned if tp.partition not in done]
        # Owned and rewound: from now on these partitions are this analyzer's.
        self.assignment = tuple(sorted(set(self.assignment) | {tp.partition for tp in assigned}))
        self._refresh_lag(consumer, force=True)


def _listener(reader: KafkaReader) -> Any:
    """kafka-python's rebalance callbacks (it wants a subclass of its ABC), sent to the reader."""
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
        def on_partitions_revoked(self, revoked: Any) -> None:
            reader.on_revoked(list(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            reader.on_assigned(list(assigned))

    return Listener()
