"""Kafka client settings and topic creation shared by the producer, consumer and admin sides."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from stockup_tui.config import KafkaConfig
from stockup_tui.engine.resilience import Backoff

log = logging.getLogger(__name__)

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


def hand_to_loop(
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[Any],
    item: Any,
    give_up: Callable[[], bool],
    timeout: float | None = None,
) -> None:
    """Puts `item` on an asyncio queue from a client thread, waiting while it is full
    (back-pressure) until it is taken, `give_up()` says stop, or `timeout` passes. A loop that
    is closing or closed is not an error: nobody is reading any more."""
    if loop.is_closed():
        return
    coro = queue.put(item)
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the loop closed meanwhile
        coro.close()
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                if give_up() or loop.is_closed():
                    return
            except concurrent.futures.CancelledError:  # the loop is shutting down
                return
    finally:
        if loop.is_closed():  # it may never have run: no "never awaited" warning, no leak
            coro.close()
