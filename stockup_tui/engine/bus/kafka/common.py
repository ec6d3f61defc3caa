"""Kafka client settings and topic creation shared by the producer, consumer and admin sides."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.resilience import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A client thread that cannot reach the brokers retries after this long, doubling up to
#: BACKOFF_MAX (seconds).
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0


def backoff() -> Backoff:
    """The reconnect backoff of the Kafka client threads."""
    return Backoff(BACKOFF_FIRST, BACKOFF_MAX)


def client_config(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection options common to every kafka-python client (secrets stay inside)."""
    out: dict[str, Any] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": round(cfg.request_timeout * 1000),
        "reconnect_backoff_max_ms": 2000,
        # Fail fast when no broker answers: the bus retries with backoff and says so meanwhile.
        "bootstrap_timeout_ms": 5000,
    }
    if cfg.sasl_mechanism:
        out["sasl_mechanism"] = cfg.sasl_mechanism
        out["sasl_plain_username"] = cfg.sasl_username
        if cfg.sasl_password is not None:
            out["sasl_plain_password"] = cfg.sasl_password.get_secret_value()
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(cfg, key)
        if value is not None:
            out[key] = str(value)
    return out


def ensure_topics(cfg: KafkaConfig) -> None:
    """Creates the app's topics when missing (trades, metrics, control, status, dead letters)."""
    from kafka import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    retention = str(round(cfg.retention * 1000))
    wanted: dict[str, dict[str, Any]] = {
        cfg.topic: {"retention.ms": retention},
        cfg.metrics_topic: {"retention.ms": retention},
        cfg.dead_letter_topic: {"retention.ms": str(7 * 86_400_000)},
        # The control topic holds the latest watchlist under one key: compacted, kept forever.
        cfg.control_topic: {"cleanup.policy": "compact"},
        # Status records: a monitor reads the last minute of them; an hour is plenty.
        cfg.status_topic: {"retention.ms": str(3_600_000)},
    }
    admin = KafkaAdminClient(**client_config(cfg))
    try:
        existing = set(admin.list_topics())
        missing = {name: conf for name, conf in wanted.items() if name not in existing}
        if not missing:
            return
        single = {cfg.control_topic, cfg.status_topic}  # small topics read whole
        spec = {
            name: {
                "num_partitions": 1 if name in single else cfg.partitions,
                "replication_factor": cfg.replication_factor,
                "configs": conf,
            }
            for name, conf in missing.items()
        }
        with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
            admin.create_topics(spec, wait_for_metadata=True)
        log.info("created Kafka topics: %s", ", ".join(sorted(missing)))
    finally:
        admin.close()


def servers(cfg: KafkaConfig) -> str:
    return ",".join(cfg.bootstrap_servers)


def describe_error(exc: BaseException) -> str:
    """One line for the screen; kafka-python errors are often bare class names."""
    text = str(exc).strip()
    name = type(exc).__name__
    if not text or text == name:
        return name
    if text.startswith(name):
        return text[:300]
    return f"{name}: {text}"[:300]


class Handoff(Generic[T]):
    """Items from one client thread to the event loop, in order, at most `size` not yet taken.

    While there is room, `put` is one `call_soon_threadsafe`: no task on the loop and no wait
    for its answer (`run_coroutine_threadsafe(queue.put(item))` cost a task, two chained
    futures and a switch of both threads per item). It blocks only while `size` items are
    untaken: back-pressure on the client thread, never on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._room = threading.Semaphore(size)
        self._items: asyncio.Queue[T] = asyncio.Queue()  # bounded by `_room`

    def put(self, item: T, give_up: Callable[[], bool], timeout: float | None = None) -> bool:
        """(client thread) True once `item` is on its way to the loop; False when there was no
        room before `give_up()` said stop, `timeout` passed or the loop closed (nobody reads
        any more: not an error)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._room.acquire(timeout=_wait(deadline)):
            if give_up() or self._loop.is_closed():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    def end(self, item: T) -> None:
        """(loop) Puts `item` without waiting for room: the end of a stream whose client
        thread is stuck."""
        self._items.put_nowait(item)

    async def get(self) -> T:
        """(loop) The next item; its room goes back to the client thread."""
        item = await self._items.get()
        self._room.release()
        return item


def _wait(deadline: float | None) -> float:
    """How long one wait for room lasts: up to half a second, so that `give_up` is asked."""
    if deadline is None:
        return 0.5
    return max(0.0, min(0.5, deadline - time.monotonic()))
