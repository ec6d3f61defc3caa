"""Chaos over Kafka: the output is a function of the log, whatever happens to the cluster.

A seeded recording goes through a `--role query` process into the real broker while a consumer
group of analyzer processes turns it into snapshots. At seeded moments: one analyzer is killed
with `kill -9` and started again, another is frozen (SIGSTOP) for longer than the session
timeout and then thawed, a third joins the group, and the broker is restarted. Every snapshot
any of them emitted must equal the offline computation of the recording, and together they must
have emitted all of it. The restarted analyzer must be emitting again within 10 s.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import wait_until
from tests.integration import chaos
from tests.integration.kafka_helpers import kafka_script
from tests.services import private_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WINDOWS = ["1m", "5m"]
SESSION_TIMEOUT = 6.0


@pytest.fixture
def kafka_names() -> Iterator[dict[str, Any]]:
    """A private set of topics and a group on the real broker, deleted afterwards."""
    with private_kafka("chaos", session_timeout=f"{SESSION_TIMEOUT:g}s") as section:
        yield section


def config(path: Path, section: dict[str, Any]) -> Path:
    lines = [f"windows = {orjson.dumps(WINDOWS).decode()}", "[bus]", 'kind = "kafka"', "[kafka]"]
    lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in section.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("seed", [1])
async def test_kill_freeze_join_and_broker_restart_change_nothing(
    kafka_names: dict[str, Any], tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    rec = tmp_path / "rec.jsonl"
    chaos.write_recording(rec, seed, seconds=420)  # the 5m window slides all the way
    want = await chaos.offline(rec, WINDOWS)
    assert len(want) > 2000
    cfg = config(tmp_path / "cluster.toml", kafka_names)
    procs = chaos.Procs(tmp_path)
    outs: list[Path] = []

    def analyzer(name: str) -> None:
        out = tmp_path / f"{name}.jsonl"
        outs.append(out)
        procs.start(name, ["--config", str(cfg), "--role", "analyzer", "--metrics-out", str(out)])

    def assigned(name: str) -> bool:
        return "Kafka partitions assigned" in procs.text(name)

    restart_delay: list[float] = []
    try:
        analyzer("a1")
        analyzer("b")
        await wait_until(lambda: assigned("a1") and assigned("b"), 60, "a and b in the group")
        procs.start(
            "query",
            ["--config", str(cfg), "--role", "query", "--replay", str(rec), "--replay-speed", "8"],
        )

        async def kill_and_restart() -> None:
            procs.kill("a1")
            analyzer("a2")
            started = time.monotonic()
            out = outs[-1]
            await wait_until(lambda: chaos.rows(out), 30, "the restarted analyzer to emit")
            restart_delay.append(time.monotonic() - started)

        async def freeze() -> None:
            procs.kill("b", signal.SIGSTOP)
            await asyncio.sleep(SESSION_TIMEOUT + 3)  # its session expires: a rebalance
            procs.kill("b", signal.SIGCONT)

        async def join() -> None:
            analyzer("c")
            await wait_until(lambda: assigned("c"), 60, "c in the group")

        async def broker_restart() -> None:
            await asyncio.to_thread(kafka_script, "stop")
            await asyncio.to_thread(kafka_script, "start")

        async def at(moment: float, action: Callable[[], Awaitable[None]]) -> None:
            await asyncio.sleep(moment)
            await action()

        # Seeded moments while the recording plays (about 50 s): the restart is measured
        # before the broker goes away; the rest may overlap anything.
        await asyncio.gather(
            at(rng.uniform(3, 15), kill_and_restart),
            at(rng.uniform(3, 40), freeze),
            at(rng.uniform(3, 40), join),
            at(rng.uniform(28, 36), broker_restart),
        )
        await wait_until(lambda: procs.procs["query"].poll() is not None, 240, "the query's end")
        assert procs.procs["query"].returncode == 0, procs.text("query")[-2000:]
        await wait_until(lambda: not chaos.compare(want, outs)[1], 180, "every snapshot emitted")
    finally:
        codes = procs.stop_all()
    wrong, missing = chaos.compare(want, outs)
    assert not wrong, f"{len(wrong)} snapshots differ from the offline computation: {wrong[:2]}"
    assert not missing, f"never emitted: {sorted(missing)[:5]}"
    assert restart_delay and restart_delay[0] < 10, restart_delay
    for name in ("a2", "b", "c"):
        assert codes[name] == 0, procs.text(name)[-2000:]
        assert "Traceback" not in procs.text(name), procs.text(name)[-3000:]
