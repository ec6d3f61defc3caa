"""Shared by the RabbitMQ tests: private names per test, an admin connection, stopping the server.

Every test gets its own exchange, queue, dead-letter exchange and queue (uuid names), deleted at
the end. The admin side uses pika's BlockingConnection: quick calls to a local server, only for
setting up, inspecting and cleaning up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pika

from tests.helpers import REPO
from tests.services import (
    RABBITMQ_HOST,
    RABBITMQ_PASSWORD,
    RABBITMQ_PORT,
    RABBITMQ_USER,
    RABBITMQ_VHOST,
)


def names(queue_type: str = "stream", tmp: Path | None = None) -> dict[str, Any]:
    """A `[rabbitmq]` section with private names (and a private checkpoint file)."""
    u = uuid.uuid4().hex[:10]
    section: dict[str, Any] = {
        "host": RABBITMQ_HOST,
        "port": RABBITMQ_PORT,
        "vhost": RABBITMQ_VHOST,
        "username": RABBITMQ_USER,
        "password": RABBITMQ_PASSWORD,
        "exchange": f"test.{u}.x",
        "queue": f"test.{u}.q",
        "queue_type": queue_type,
        "dead_letter_exchange": f"test.{u}.dlx",
        "dead_letter_queue": f"test.{u}.dlq",
        "max_age": "1h",
        "prefetch": 200,
    }
    if tmp is not None:
        section["checkpoint"] = str(tmp / f"checkpoint-{u}.json")
    return section


def as_flags(section: dict[str, Any]) -> list[str]:
    """`--set rabbitmq.key=value` flags for a subprocess (the password goes by environment)."""
    out: list[str] = []
    for key, value in section.items():
        if key != "password":
            out += ["--set", f"rabbitmq.{key}={value}"]
    return out


@contextmanager
def admin() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    params = pika.ConnectionParameters(
        host=RABBITMQ_HOST,
        port=RABBITMQ_PORT,
        virtual_host=RABBITMQ_VHOST,
        credentials=pika.PlainCredentials(RABBITMQ_USER, RABBITMQ_PASSWORD),
        connection_attempts=30,
        retry_delay=0.5,
    )
    conn = pika.BlockingConnection(params)
    try:
        yield conn.channel()
    finally:
        if conn.is_open:
            conn.close()


def delete_all(section: dict[str, Any]) -> None:
    """Deletes the test's queues and exchanges (each on a fresh channel: a miss closes it)."""
    with admin() as ch:
        conn = ch.connection
        for q in (section["queue"], section["dead_letter_queue"]):
            c = conn.channel()
            with suppress(pika.exceptions.ChannelClosedByBroker):
                c.queue_delete(q)
        for x in (section["exchange"], section["dead_letter_exchange"]):
            c = conn.channel()
            with suppress(pika.exceptions.ChannelClosedByBroker):
                c.exchange_delete(x)


def queue_counts(queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, from a passive declare."""
    with admin() as ch:
        ok = ch.queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count


def get_all(queue: str) -> list[tuple[Any, bytes]]:
    """Takes every message of a classic queue: (properties, body)."""
    out = []
    with admin() as ch:
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((props, body))


def publish_raw(exchange: str, key: str, body: bytes) -> None:
    with admin() as ch:
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, body, mandatory=True)


# -- stopping and starting the server ------------------------------------------------------


def _ctl(action: str) -> None:
    """`scripts/rabbitmq.sh stop_app|start_app` when the script exists, else rabbitmqctl."""
    script = REPO / "scripts" / "rabbitmq.sh"
    if script.is_file() and os.access(script, os.X_OK):
        cmd = [str(script), action]
    else:
        ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        cmd = [ctl, action]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def port_open(host: str = RABBITMQ_HOST, port: int = RABBITMQ_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def can_control_server() -> bool:
    script = REPO / "scripts" / "rabbitmq.sh"
    return (script.is_file() and os.access(script, os.X_OK)) or shutil.which(
        "rabbitmqctl"
    ) is not None


def stop_app() -> None:
    _ctl("stop_app")


def start_app(timeout: float = 120.0) -> None:
    _ctl("start_app")
    deadline = time.monotonic() + timeout
    while True:  # answers AMQP logins again (the vhost is up)
        try:
            with admin():
                return
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
