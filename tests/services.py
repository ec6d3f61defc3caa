"""Where the real servers of the integration tests are, and what to do when one is missing.

`scripts/services.sh start` starts them all on these addresses (override with the variables
below). A test that needs a server calls `require(...)`: when the server does not answer, the
test is skipped with the reason, unless `STOCKUP_REQUIRE_SERVICES=1` (set by `.ci/run` after it
started every server), where it fails instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

KAFKA_BOOTSTRAP = os.environ.get("TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RABBITMQ_HOST = os.environ.get("TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("TEST_RABBITMQ_PORT", "5672"))
RABBITMQ_VHOST = os.environ.get("TEST_RABBITMQ_VHOST", "stocks")
RABBITMQ_USER = os.environ.get("TEST_RABBITMQ_USER", "stockup")
# The development password that scripts/rabbitmq.sh gives the least-privilege user.
RABBITMQ_PASSWORD = os.environ.get("TEST_RABBITMQ_PASSWORD", "stockup-dev")
INFLUX_URL = os.environ.get("TEST_INFLUX_URL", "http://127.0.0.1:8086")
VICTORIA_URL = os.environ.get("TEST_VICTORIA_URL", "http://127.0.0.1:8428")


def services_required() -> bool:
    return os.environ.get("STOCKUP_REQUIRE_SERVICES") == "1"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Skips (or, under STOCKUP_REQUIRE_SERVICES=1, fails) when `name` does not answer."""
    if reachable(host, port):
        return
    reason = (
        f"{name} is not reachable at {host}:{port}; start it with `scripts/services.sh start "
        f"{name.lower()}`"
    )
    if services_required():
        pytest.fail(f"STOCKUP_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    address = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host else (address, default_port)


def require_kafka() -> str:
    host, port = _host_port(KAFKA_BOOTSTRAP.split(",")[0], 9092)
    require("Kafka", host, port)
    return KAFKA_BOOTSTRAP


@contextmanager
def private_kafka(prefix: str, **extra: Any) -> Iterator[dict[str, Any]]:
    """A `kafka` settings section with topics and a group of its own on the real broker (so
    that tests never see each other's records); its topics are deleted afterwards."""
    bootstrap = require_kafka()
    tag = f"{prefix}.{uuid.uuid4().hex[:10]}"
    section: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "topic": f"{tag}.trades",
        "metrics_topic": f"{tag}.metrics",
        "control_topic": f"{tag}.control",
        "status_topic": f"{tag}.status",
        "dead_letter_topic": f"{tag}.dlq",
        "group_id": tag,
        "partitions": 6,
        **extra,
    }
    try:
        yield section
    finally:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            existing = set(admin.list_topics())
            names = [v for k, v in section.items() if k.endswith("topic") and v in existing]
            admin.delete_topics(names)
        finally:
            admin.close()


def require_rabbitmq() -> tuple[str, int]:
    require("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    return RABBITMQ_HOST, RABBITMQ_PORT


def require_influx() -> str:
    require("InfluxDB", *_host_port(INFLUX_URL, 8086))
    return INFLUX_URL


def require_victoria() -> str:
    require("victoria-metrics", *_host_port(VICTORIA_URL, 8428))
    return VICTORIA_URL
