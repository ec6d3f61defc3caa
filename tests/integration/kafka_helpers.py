"""Shared by the Kafka tests that take the broker away: `scripts/kafka.sh stop|start` and the
broker's process (to freeze it with SIGSTOP)."""

from __future__ import annotations

import subprocess

from tests.helpers import REPO


def broker_pid() -> int:
    pidfile = REPO / ".services" / "kafka" / "kafka.pid"
    return int(pidfile.read_text().strip())


def kafka_script(action: str) -> None:
    subprocess.run([str(REPO / "scripts" / "kafka.sh"), action], check=True, timeout=180)
