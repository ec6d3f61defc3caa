"""The monitor's cluster view against the real broker: a query and two analyzer processes
report on the status topic; one is killed (`kill -9`) and turns red within its reporting
interval, its partitions go to the other; a process stopped with SIGTERM says so."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stockup_tui.config import Settings
from stockup_tui.engine.cluster import LIVE, SILENT, STOPPED, ClusterFigures, ProcessRow
from stockup_tui.engine.wiring import build_pipeline
from stockup_tui.widgets.health import Level, problem
from tests.helpers import wait_until
from tests.integration import chaos
from tests.services import private_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

INTERVAL = 0.5  # kafka.status_interval of every process here
SILENT_AFTER = 2 * INTERVAL + 1.0  # engine/cluster.py: health_of


@pytest.fixture
def kafka_names() -> Iterator[dict[str, Any]]:
    """A private set of topics and a group on the real broker, deleted afterwards."""
    with private_kafka("cluster", session_timeout="6s", status_interval=f"{INTERVAL}s") as section:
        yield section


def write_config(path: Path, section: dict[str, Any]) -> Path:
    lines = [
        'symbols = ["AAPL", "MSFT", "NVDA", "TSLA", "META", "AMZN"]',
        "[bus]",
        'kind = "kafka"',
    ]
    lines += ["[kafka]", *(f"{k} = {orjson.dumps(v).decode()}" for k, v in section.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def by_pid(cluster: ClusterFigures | None, pid: int) -> ProcessRow | None:
    if cluster is None:
        return None
    return next((row for row in cluster.processes if row.status.identity.pid == pid), None)


async def test_cluster_view_shows_the_processes_and_a_killed_one_turns_red(
    kafka_names: dict[str, Any], tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "cluster.toml", kafka_names)
    settings = Settings.model_validate(
        {"role": "monitor", "bus": {"kind": "kafka"}, "kafka": kafka_names}
    )
    monitor = build_pipeline(settings)
    procs = chaos.Procs(tmp_path)

    def cluster() -> ClusterFigures | None:
        return monitor.fresh_stats(0).cluster

    def health(name: str) -> str | None:
        row = by_pid(cluster(), procs.procs[name].pid)
        return None if row is None else row.health

    await monitor.start()
    try:
        procs.start("query", ["--config", str(cfg), "--role", "query", "--rate", "500"])
        for name in ("a", "b"):
            procs.start(name, ["--config", str(cfg), "--role", "analyzer"])

        def settled() -> bool:
            c = cluster()
            if c is None or any(health(n) != LIVE for n in ("query", "a", "b")):
                return False
            owners = {p.owner for p in c.partitions}
            return (
                len(owners) == 2
                and None not in owners
                and all(p.health == LIVE for p in c.partitions)
            )

        await wait_until(settled, 90, "the query and both analyzers live, sharing 6 partitions")
        c = cluster()
        assert c is not None
        a, b = (by_pid(c, procs.procs[n].pid) for n in ("a", "b"))
        assert a is not None and b is not None
        assert {p.owner for p in c.partitions} == {a.name, b.name}
        assert len(c.partitions) == 6
        assert set(a.status.lag) | set(b.status.lag)  # each reports its partitions' lag
        own = [row for row in c.processes if row.this]
        assert len(own) == 1 and own[0].status.identity.role == "monitor"
        await wait_until(
            lambda: sum(r.status.analyzed_per_s for r in cluster().processes) > 0,  # type: ignore[union-attr]
            30,
            "the analyzers to report trades",
        )

        killed_at = time.monotonic()
        procs.kill("b")  # SIGKILL: it says nothing more
        await wait_until(lambda: health("b") == SILENT, 30, "the killed analyzer to turn red")
        took = time.monotonic() - killed_at
        # From its last record (sent before the kill) to red: the threshold, plus the poll.
        assert took <= SILENT_AFTER + 1.0, f"red after {took:.2f}s"
        assert health("a") != SILENT and health("query") != SILENT
        level, text = problem(monitor.fresh_stats(0)) or (Level.IDLE, "")
        assert level == Level.BAD and "silent" in text, text

        await wait_until(
            lambda: {(p.owner, p.health) for p in cluster().partitions} == {(a.name, LIVE)},  # type: ignore[union-attr]
            60,
            "the survivor to own every partition",
        )

        procs.kill("query", signal.SIGTERM)
        assert procs.procs["query"].returncode == 0, procs.text("query")[-2000:]
        await wait_until(lambda: health("query") == STOPPED, 30, "the query to say it stopped")
    finally:
        procs.stop_all()
        await monitor.stop()
