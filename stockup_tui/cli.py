"""Command line: `stockup-tui` (screen), `--headless` (service), `simulate`, `config`.

Flags are the highest layer of the configuration (see `stockup_tui.config`); each flag below maps
to one dotted setting, and `--set key=value` reaches any other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import platformdirs

from stockup_tui import __version__, exits
from stockup_tui.config import (
    APP_NAME,
    ConfigError,
    LoadedConfig,
    Role,
    default_config_path,
    effective_items,
    load_config,
)
from stockup_tui.untrusted import SafeFormatter, printable, safe, safe_lines

# flag dest -> dotted setting
FLAG_KEYS = {
    "symbols": "symbols",
    "windows": "windows",
    "source": "source.kind",
    "url": "source.url",
    "replay": "source.replay",
    "replay_speed": "source.replay_speed",
    "record": "source.record",
    "bus": "bus.kind",
    "role": "role",
    "rate": "simulator.rate",
    "metrics_out": "sinks.jsonl",
    "status_interval": "headless.status_interval",
    "log_level": "log.level",
}

SIM_FLAG_KEYS = {
    "port": "simulator.port",
    "rate": "simulator.rate",
    "seed": "simulator.seed",
    "duplicate_fraction": "simulator.duplicate_fraction",
    "malformed_rate": "simulator.malformed_rate",
    "drop_every": "simulator.drop_every",
    "stall_after": "simulator.stall_after",
    "symbol_limit": "simulator.symbol_limit",
    "ping_interval": "simulator.ping_interval",
}


def _common(p: argparse.ArgumentParser, sub: bool = False) -> None:
    """The flags that go before or after a subcommand. A subcommand's copies have their own
    names and no defaults, so that they add to those given before it instead of erasing them
    (argparse copies a subcommand's namespace over the main one); `_merge_common` joins them."""
    suffix = "_sub" if sub else ""
    extra: dict[str, Any] = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        dest="config" + suffix,
        help=f"TOML configuration file (default: {default_config_path()})",
        **extra,
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="set" + suffix,
        help="set any setting by its dotted key, e.g. --set source.watchdog=5s (repeatable)",
        **(extra or {"default": []}),
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        dest="log_level" + suffix,
        **extra,
    )


def _merge_common(args: argparse.Namespace) -> argparse.Namespace:
    """Flags given after the subcommand win over the same ones given before it; `--set`s add."""
    if hasattr(args, "config_sub"):
        args.config = args.config_sub
    if hasattr(args, "log_level_sub"):
        args.log_level = args.log_level_sub
    args.set = [*args.set, *getattr(args, "set_sub", [])]
    return args


class _Parser(argparse.ArgumentParser):
    """argparse quotes the arguments it refuses: as text, one line, secrets masked."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(exits.CONFIG, f"{self.prog}: error: {safe(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stockup-tui",
        description="Live stock trades: websocket feed -> bus -> exact sliding-window metrics.",
        epilog="Settings come from defaults < config file < STOCKUP_* environment < flags. "
        "Run 'stockup-tui config' to see every setting and where its value came from.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser)
    parser.add_argument("--headless", action="store_true", help="run as a service, no screen")
    parser.add_argument("--symbols", metavar="A,B,...", help="watchlist, comma separated")
    parser.add_argument("--windows", metavar="1m,5m", help="sliding windows, comma separated")
    parser.add_argument("--source", choices=["simulator", "finnhub", "replay"])
    parser.add_argument("--url", help="websocket URL of the Finnhub-protocol feed")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="play back a recording")
    parser.add_argument(
        "--replay-speed", type=float, metavar="X", help="0 = as fast as possible, 1 = recorded"
    )
    parser.add_argument("--record", type=Path, metavar="FILE", help="record every raw frame")
    parser.add_argument("--bus", choices=["memory", "kafka", "rabbitmq"], help="message bus")
    parser.add_argument(
        "--role",
        choices=[r.value for r in Role],
        help="run the whole pipeline (all) or one part of it over a network bus",
    )
    parser.add_argument("--rate", type=float, metavar="N", help="simulator trades per second")
    parser.add_argument(
        "--metrics-out", type=Path, metavar="FILE", help="append emitted snapshots as JSON lines"
    )
    parser.add_argument("--status-interval", metavar="DURATION", help="headless status period")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser(
        "simulate", help="run the market simulator alone (a Finnhub-protocol websocket server)"
    )
    _common(sim, sub=True)
    sim.add_argument("--port", type=int, help="TCP port on 127.0.0.1 (0 = any free port)")
    sim.add_argument("--rate", type=float, help="total trades per second per connection")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--duplicate-fraction", type=float)
    sim.add_argument("--malformed-rate", type=float, help="fault: fraction of bad frames")
    sim.add_argument("--drop-every", metavar="DURATION", help="fault: drop connections every N")
    sim.add_argument("--stall-after", metavar="DURATION", help="fault: go silent after N")
    sim.add_argument("--symbol-limit", type=int)
    sim.add_argument("--ping-interval", metavar="DURATION")

    cfg = sub.add_parser("config", help="print the effective configuration and its origins")
    _common(cfg, sub=True)
    return parser


def _overrides(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dest, key in mapping.items():
        value = getattr(args, dest, None)
        if value is not None:
            out[key] = str(value) if isinstance(value, Path) else value
    if getattr(args, "replay", None) is not None and getattr(args, "source", None) is None:
        out["source.kind"] = "replay"
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _setup_logging(loaded: LoadedConfig, screen: bool) -> None:
    """Logs go to stderr, or to a file when the screen owns the terminal."""
    cfg = loaded.settings.log
    path = cfg.file
    if path is None and screen:
        path = Path(platformdirs.user_log_dir(APP_NAME)) / "stockup-tui.log"
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    # Log records carry text from outside (feed errors, URLs): one line each, secrets masked.
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=cfg.level, handlers=[handler], force=True)
    # The websockets library logs every connection at INFO; our own logs say what matters.
    # Client libraries log every connection at INFO; their warnings and errors are what matter.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))
    # kafka-python and pika log errors on every reconnect attempt while a broker is away; the
    # buses report each state change once themselves (log, screen, status line).
    for name in ("kafka", "pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    threading.excepthook = _log_thread_error


def _log_thread_error(args: threading.ExceptHookArgs) -> None:
    """A thread that dies says so in one log line (its traceback at DEBUG), never as a raw
    traceback on the terminal under the screen or the status lines."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log = logging.getLogger("stockup_tui")
    log.error("thread %s failed: %s: %s", name, args.exc_type.__name__, args.exc_value)
    if args.exc_value is not None:
        log.debug("thread %s traceback", name, exc_info=args.exc_value)


def print_config(loaded: LoadedConfig) -> None:
    print(f"# config file: {printable(loaded.path or '(none; defaults)')}")
    rows = [tuple(map(safe, row)) for row in effective_items(loaded)]  # a URL may carry one
    width = max(len(k) for k, _, _ in rows)
    for key, shown, origin in rows:
        print(f"{key:<{width}}  {shown:<30}  # {origin}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _merge_common(parser.parse_args(argv))
    mapping = SIM_FLAG_KEYS if args.command == "simulate" else FLAG_KEYS
    try:
        overrides = _overrides(args, mapping)
        if args.log_level:
            overrides["log.level"] = args.log_level
        # `config` shows the settings even when they do not work together, then says why.
        loaded = load_config(args.config, overrides, check_rules=args.command != "config")
    except ConfigError as exc:
        print(f"stockup-tui: {safe_lines(exc)}", file=sys.stderr)
        return exits.CONFIG
    _setup_logging(loaded, screen=args.command is None and not args.headless)

    if args.command == "config":
        try:
            print_config(loaded)
            sys.stdout.flush()
        except BrokenPipeError:  # `stockup-tui config | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        problems = loaded.problems()
        for text in problems:
            print(f"stockup-tui: {safe(text)}", file=sys.stderr)
        return exits.CONFIG if problems else exits.OK
    if args.command == "simulate":
        from stockup_tui.engine.simulator import run_simulator
        from stockup_tui.engine.wiring import simulator_settings

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_simulator(simulator_settings(loaded.settings.simulator)))
        return exits.OK

    if args.headless:
        from stockup_tui.headless import run_headless

        try:
            return asyncio.run(run_headless(loaded.settings))
        except ConfigError as exc:
            print(f"stockup-tui: {safe_lines(exc)}", file=sys.stderr)
            return exits.CONFIG
    return run_app(loaded)


def run_app(loaded: LoadedConfig) -> int:
    """The dashboard; the engine runs on its own thread under it."""
    from stockup_tui.app import StockupApp
    from stockup_tui.engine.host import EngineHost
    from stockup_tui.widgets.detail import CHART_POINTS

    # The engine's threads share the GIL with the screen: hand it over more often than the
    # default 5 ms so that a key press is not kept waiting behind a burst of trades.
    sys.setswitchinterval(0.001)
    try:
        host = EngineHost(loaded.settings, live_points=CHART_POINTS)
    except ConfigError as exc:
        print(f"stockup-tui: {safe_lines(exc)}", file=sys.stderr)
        return exits.CONFIG
    app = StockupApp(loaded, host)
    app.run()
    code = app.return_code or exits.OK
    if app.exit_note:
        print(safe(app.exit_note), file=sys.stderr, flush=True)
    if app.quitting == "abandoned":
        # The engine's threads may be stuck on a dead broker: they must not keep us alive.
        sys.stdout.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
