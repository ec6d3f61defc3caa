"""The README's screenshots, from a real run: the dashboard over the embedded simulator.

    python scripts/screenshot.py docs/screenshot.svg [--size 160x45] [--seconds 20]
    python scripts/screenshot.py docs/symbol-view.svg --keys enter

The app runs headless through Textual's Pilot (no terminal needed) for `--seconds`, so the
windows have filled, then the given keys are pressed and the screen is saved as SVG.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
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
    args = ap.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    flags = {"simulator.rate": args.rate, "simulator.seed": 11, "ui.show_log": True}
    loaded = load_config(overrides=flags, environ={})
    host = EngineHost(loaded.settings, live_points=CHART_POINTS)
    config = Path(tempfile.mkdtemp()) / "config.toml"  # the user's own file stays untouched
    app = StockupApp(loaded, host, config_path=config, save=False)
    async with app.run_test(size=(width, height)) as pilot:
        await pilot.pause(args.seconds)
        if args.keys:
            await pilot.press(*args.keys)
            await pilot.pause(1.0)
        app.save_screenshot(filename=args.out.name, path=str(args.out.parent))
        await pilot.press("q")
        await pilot.pause(2.0)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
