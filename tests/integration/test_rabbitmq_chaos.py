"""Chaos over a RabbitMQ stream: the output is a function of the log, whatever happens.

A seeded recording goes through a `--role query` process into the real server's stream, read by
analyzer processes (each reads the whole stream, with its own checkpoint). At seeded moments:
one analyzer is killed with `kill -9` and started again, another is frozen (SIGSTOP) for longer
than its heartbeat timeout (the server drops its connection) and then thawed, a third starts
mid-stream from nothing, and the server application is restarted. Every snapshot any of them
emitted must equal the offline computation of the recording, and each of them must have emitted
all of it. The restarted analyzer must be emitting again within 10 s.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration import chaos
from tests.integration import rabbitmq_helpers as rmq
from tests.services import RABBITMQ_PASSWORD, require_rabbitmq

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

WINDOWS = "1m,5m"
HEARTBEAT = 5.0


@pytest.mark.parametrize("seed", [2])
async def test_kill_freeze_join_and_broker_restart_change_nothing(
    tmp_path: Path, seed: int
) -> None:
    require_rabbitmq()
    rng = random.Random(seed)
    rec = tmp_path / "rec.jsonl"
    chaos.write_recording(rec, seed, seconds=420)  # the 5m window slides all the way
    want = await chaos.offline(rec, WINDOWS.split(","))
    assert len(want) > 2000
    section = rmq.names("stream")
    section["heartbeat"] = f"{HEARTBEAT:g}s"
    env = {k: v for k, v in chaos.Procs(tmp_path).env.items()}
    env["STOCKUP_RABBITMQ__PASSWORD"] = RABBITMQ_PASSWORD
    procs = chaos.Procs(tmp_path, env)
    lives: dict[str, list[Path]] = {"a": [], "b": [], "c": []}

    def analyzer(name: str, life: str) -> Path:
        out = tmp_path / f"{life}.jsonl"
        lives[name].append(out)
        flags = rmq.as_flags({**section, "checkpoint": str(tmp_path / f"{name}.checkpoint")})
        args = ["--bus", "rabbitmq", "--role", "analyzer", "--windows", WINDOWS]
        procs.start(life, [*args, "--metrics-out", str(out), *flags])
        return out

    def attached(name: str) -> bool:
        return "RabbitMQ consumer: connected" in procs.text(name)

    restart_delay: list[float] = []
    try:
        analyzer("a", "a1")
        analyzer("b", "b")
        await wait_until(lambda: attached("a1") and attached("b"), 60, "a and b attached")
        procs.start(
            "query",
            ["--bus", "rabbitmq", "--role", "query", "--replay", str(rec), "--replay-speed", "8",
             *rmq.as_flags(section)],
        )  # fmt: skip

        async def kill_and_restart() -> None:
            procs.kill("a1")
            out = analyzer("a", "a2")
            started = time.monotonic()
            await wait_until(lambda: chaos.rows(out), 30, "the restarted analyzer to emit")
            restart_delay.append(time.monotonic() - started)

        async def freeze() -> None:
            procs.kill("b", signal.SIGSTOP)
            await asyncio.sleep(3 * HEARTBEAT)  # the server gives up on its connection
            procs.kill("b", signal.SIGCONT)

        async def join() -> None:
            analyzer("c", "c")
            await wait_until(lambda: attached("c"), 60, "c attached")

        async def broker_restart() -> None:
            await asyncio.to_thread(rmq.stop_app)
            try:
                await asyncio.sleep(2)
            finally:
                await asyncio.to_thread(rmq.start_app)

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

        def complete() -> bool:
            return all(not chaos.compare(want, outs)[1] for outs in lives.values())

        await wait_until(complete, 180, "every analyzer to emit everything")
    finally:
        codes = procs.stop_all()
        rmq.delete_all(section)
    for name, outs in lives.items():
        wrong, missing = chaos.compare(want, outs)
        assert not wrong, f"{name}: {len(wrong)} snapshots differ: {wrong[:2]}"
        assert not missing, f"{name} never emitted {sorted(missing)[:5]}"
    assert restart_delay and restart_delay[0] < 10, restart_delay
    for life in ("a2", "b", "c"):
        assert codes[life] == 0, procs.text(life)[-2000:]
        assert "Traceback" not in procs.text(life), procs.text(life)[-3000:]
