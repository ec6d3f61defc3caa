"""The README's screenshots, from a real run: the dashboard over the embedded simulator.

    python scripts/screenshot.py docs/screenshot.svg [--size 160x45] [--seconds 20]
    python scripts/screenshot.py docs/symbol-view.svg --keys enter
    python scripts/screenshot.py docs/cluster-view.svg --cluster 2 --kill-one

The app runs headless through Textual's Pilot (no terminal needed) for `--seconds`, so the
windows have filled, then the given keys are pressed and the screen is saved as SVG.

`--cluster N` runs a deployment on the Kafka broker at 127.0.0.1:9092 (scripts/kafka.sh): a
`--role query` process on the simulator and N `--role analyzer` processes, on private topics
deleted afterwards, and the screen as `--role monitor`; `--kill-one` kills the last analyzer
with SIGKILL before the picture, so that it shows a silent process and its partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from stockup_tui.app import StockupApp
from stockup_tui.config import load_config
from stockup_tui.engine.host import EngineHost
from stockup_tui.widgets.detail import CHART_POINTS


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", default="160x45")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--keys", nargs="*", default=[])
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--cluster", type=int, default=0, metavar="N", help="N analyzer processes")
    ap.add_argument("--kill-one", action="store_true", help="kill -9 one analyzer first")
    args = ap.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    flags = {"simulator.rate": args.rate, "simulator.seed": 11, "ui.show_log": True}
    if args.cluster:
        await cluster_shot(args, flags, width, height)
        return
    loaded = load_config(overrides=flags, environ={})
    host = EngineHost(loaded.settings, live_points=CHART_POINTS)
    config = Path(tempfile.mkdtemp()) / "config.toml"  # the user's own file stays untouched
    app = StockupApp(loaded, host, config_path=config, save=False)
    await shoot(app, args, width, height)
    print(f"wrote {args.out}")


async def shoot(
    app: StockupApp,
    args: argparse.Namespace,
    width: int,
    height: int,
    before: Callable[[], float] | None = None,
) -> None:
    """Runs the app for `--seconds`, then `before()` (it returns how long to wait after it),
    presses `--keys`, saves the screen and quits."""
    async with app.run_test(size=(width, height)) as pilot:
        await pilot.pause(args.seconds)
        if before is not None:
            await pilot.pause(before())
        if args.keys:
            await pilot.press(*args.keys)
            await pilot.pause(1.0)
        app.save_screenshot(filename=args.out.name, path=str(args.out.parent))
        await pilot.press("q")
        await pilot.pause(2.0)


async def cluster_shot(
    args: argparse.Namespace, flags: dict[str, object], width: int, height: int
) -> None:
    tag = uuid.uuid4().hex[:8]
    kafka = {
        "topic": f"shot.{tag}.trades",
        "metrics_topic": f"shot.{tag}.metrics",
        "control_topic": f"shot.{tag}.control",
        "status_topic": f"shot.{tag}.status",
        "dead_letter_topic": f"shot.{tag}.dlq",
        "group_id": f"shot.{tag}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    env |= {f"STOCKUP_KAFKA__{k.upper()}": v for k, v in kafka.items()}
    env |= {"STOCKUP_BUS__KIND": "kafka", "STOCKUP_SIMULATOR__SEED": "11"}
    cmd = [sys.executable, "-m", "stockup_tui", "--headless"]
    logs = Path(tempfile.mkdtemp())
    procs = [
        subprocess.Popen(
            [*cmd, "--role", role, "--rate", str(args.rate)],
            env=env,
            stdout=(logs / f"{role}{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i, role in enumerate(["query"] + ["analyzer"] * args.cluster)
    ]
    overrides = {**flags, "role": "monitor", "bus.kind": "kafka", "ui.show_log": False}
    overrides |= {f"kafka.{k}": v for k, v in kafka.items()}
    loaded = load_config(overrides=overrides, environ={})
    host = EngineHost(loaded.settings, live_points=CHART_POINTS)
    app = StockupApp(loaded, host, config_path=logs / "config.toml", save=False)

    def kill_one() -> float:
        procs[-1].send_signal(signal.SIGKILL)
        return 2 * loaded.settings.kafka.status_interval + 2  # until it shows as silent

    try:
        await shoot(app, args, width, height, kill_one if args.kill_one else None)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=loaded.settings.kafka.bootstrap_servers)
        try:
            names = set(admin.list_topics())
            admin.delete_topics([n for n in kafka.values() if n in names])
        finally:
            admin.close()
    print(f"wrote {args.out} (process logs in {logs})")


if __name__ == "__main__":
    asyncio.run(main())
