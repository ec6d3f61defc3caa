"""Everything that crosses into the process, fuzzed (hypothesis): feed frames, bus records,
control messages, config files, environment variables and command-line arguments.

For each: no exception but the documented one escapes, every input is accepted or counted by
reason, and any text it leaves for a person (a log line, an error message, a screen line) is
printable, one line per line, with no secret."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from stockup_tui import cli
from stockup_tui.config import ConfigError, load_config
from stockup_tui.engine.bus.kafka.bus import parse_control
from stockup_tui.engine.codec import CodecError, decode_record, decode_snapshot
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.sources.parser import FrameParser
from stockup_tui.untrusted import SafeFormatter, safe_lines
from stockup_tui.widgets.events import UILogHandler

SECRET = "tok-SECRET-42"
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
nasty_text = st.lists(
    st.text(st.characters(codec="utf-8"), max_size=8)
    | st.sampled_from(["\x1b]0;T\x07", "\x1b[2J", "\n", "\r", "[/", "[b]", "\u202e"])
    | st.sampled_from([f"wss://h/?token={SECRET}", f"amqp://u:{SECRET}@h:5672/v"]),
    max_size=6,
).map("".join)
trades = st.fixed_dictionaries(
    {
        "s": st.sampled_from(["AAPL", "MSFT", "ZZZ", "", 5]) | nasty_text,
        "p": st.floats(allow_nan=True) | st.integers() | st.just("1"),
        "t": st.integers(min_value=-5, max_value=10**16) | st.floats(),
        "v": st.floats() | st.integers(),
    },
    optional={"c": st.none() | st.lists(st.text(max_size=3), max_size=3) | json_values},
)
frames = (
    st.lists(trades, max_size=8).map(lambda d: {"type": "trade", "data": d})
    | st.fixed_dictionaries({"type": st.sampled_from(["error", "ping", "x"]), "msg": json_values})
    | json_values
)


def dumps(value: object) -> bytes:
    """JSON as a peer might send it: big integers and NaN included (orjson refuses both)."""
    return json.dumps(value).encode()


class Lines(logging.Handler):
    """The log lines as the app writes them (its formatter), kept for inspection."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(UILogHandler.message_of(record))  # the event pane's line


@contextlib.contextmanager
def log_lines():
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def assert_person_readable(lines: list[str]) -> None:
    for line in lines:
        for part in line.split("\n"):  # a traceback keeps its own lines
            assert part.isprintable(), part
        assert SECRET not in line


@FUZZ
@given(st.lists(frames | nasty_text | st.binary(max_size=40), max_size=6), st.booleans())
def test_frames_are_kept_or_counted_and_logged_as_text(inputs: list, subscribed: bool) -> None:
    drops = Drops(log_interval=0)  # every drop logged: every detail goes through the formatter
    parser = FrameParser(drops, None, 4096, max_future_ms=5000, max_age_ms=60_000)
    if subscribed:
        parser.set_subscribed(["AAPL", "MSFT"], 1.0)
    offered = 0
    with log_lines() as lines:
        for k, item in enumerate(inputs):
            raw = item if isinstance(item, str | bytes) else json.dumps(item)
            if isinstance(item, dict) and isinstance(item.get("data"), list):
                offered += len(item["data"])
            parser.parse(raw, 1.0 + k)
    kept = sum(len(b.t) for b in parser.take())
    per_trade = sum(
        n
        for reason, n in drops.snapshot().items()
        if reason not in {"binary_frame", "oversized_frame", "malformed_json", "not_an_object"}
        and reason not in {"unknown_type", "bad_data", "server_error"}
    )
    assert kept == parser.trades
    assert kept + per_trade == offered  # every trade of a trade frame: kept or counted
    assert_person_readable(lines)


@FUZZ
@given(st.binary(max_size=64) | json_values.map(dumps) | nasty_text.map(str.encode))
def test_bus_records_decode_or_raise_codec_error(payload: bytes) -> None:
    for decode in (decode_record, decode_snapshot):
        with contextlib.suppress(CodecError):
            decode(payload)


@FUZZ
@given(
    json_values.map(dumps)
    | st.builds(lambda s: dumps({"v": 1, "symbols": s}), st.lists(json_values, max_size=5))
    | st.binary(max_size=30)
)
def test_control_messages_are_a_watchlist_or_a_value_error(payload: bytes) -> None:
    try:
        symbols = parse_control(payload)
    except ValueError as exc:
        assert_person_readable([safe_lines(exc)])
    else:
        assert all(s.isprintable() and s == s.upper() for s in symbols)


toml_keys = st.sampled_from(
    ["symbols", "windows", "role", "emit_interval", "source.url", "source.token", "bus.kind",
     "kafka.bootstrap", "watchlists.x", "sinks.influx.password", "max_symbols", "nosuch",
     "source.max_frame_bytes", "ui.theme", "log.level", "stop_timeout"]
)  # fmt: skip
toml_values = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.booleans(), nasty_text,
    st.lists(nasty_text, max_size=3),
)  # fmt: skip
secret_keys = st.sampled_from(["source.token", "sinks.influx.password", "kafka.sasl_password"])
secret_values = st.sampled_from([SECRET, [SECRET], {"x": SECRET}, 42])


def _toml_line(key: str, value: object) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in value.items())
        return f"{key} = {{ {inner} }}"
    if isinstance(value, str | list):
        return f"{key} = {orjson.dumps(value).decode()}"
    return f"{key} = {str(value).lower() if isinstance(value, bool) else value}"


@FUZZ
@given(
    st.dictionaries(toml_keys, toml_values, max_size=5) | nasty_text.map(lambda t: {"": t}),
    st.dictionaries(secret_keys, secret_values, max_size=2),
)
def test_config_files_load_or_say_one_clear_error(
    tmp_path: Path, entries: dict, secrets: dict
) -> None:
    path = tmp_path / "config.toml"
    if "" in entries:  # not TOML at all
        path.write_text(entries[""], encoding="utf-8")
    else:
        lines = [_toml_line(k, v) for k, v in {**entries, **secrets}.items()]
        path.write_text("\n".join(lines), encoding="utf-8")
    try:
        loaded = load_config(path, environ={})
    except ConfigError as exc:
        message = safe_lines(exc)
        assert_person_readable([message])
        assert message.strip()
    else:
        token = loaded.settings.source.token
        assert token is None or SECRET not in str(token)  # a SecretStr never shows itself


flags = st.lists(
    st.sampled_from(
        ["--symbols", "--windows", "--bus", "--role", "--rate", "--url", "--set", "--log-level",
         "--config", "--replay-speed", "--status-interval", "--headless"]
    ).flatmap(lambda f: st.tuples(st.just(f), nasty_text | st.sampled_from(
        ["AAPL", "1m", "kafka", "x=1", "stop_timeout=1s", "source.url=ws://h:1", "DEBUG", "-1"]
    ))),
    max_size=4,
)  # fmt: skip


def _main(argv: list[str]) -> int | str | None:
    """`cli.main`, the process set-up it makes (logging, thread hook) undone afterwards."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, threading.excepthook
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        threading.excepthook = hook


@FUZZ
@given(flags, st.booleans())
@example([("--config", "\x00")], False)  # a NUL byte in a path (found by this test in CI)
def test_command_lines_run_or_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv_pairs: list, after: bool
) -> None:
    """Every flag with any value, before or after the subcommand; `config` only prints, so
    nothing is started. The result: the configuration (exit 0) or one clear error (exit 2)."""
    # A path is echoed as typed (the user's own words, not a secret the app holds).
    assume(not any(flag == "--config" and SECRET in value for flag, value in argv_pairs))
    argv = [part for pair in argv_pairs for part in pair]
    argv = ["config", *argv] if after else [*argv, "config"]
    code = _main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err
    assert_person_readable(out.splitlines() + err.splitlines())


@FUZZ
@given(nasty_text, st.lists(nasty_text, max_size=2))
def test_log_records_from_anywhere_become_one_printable_line(msg: str, args: list) -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, msg + " %s" * len(args), (), None)
    record.args = tuple(args)
    for line in (
        SafeFormatter("%(message)s").format(record),
        UILogHandler.message_of(record),
    ):
        assert line.isprintable()
        assert "\n" not in line


def test_a_recording_path_no_file_can_have_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    replay = tmp_path / "r.jsonl"
    replay.write_text("")
    code = _main(["--headless", "--replay", str(replay), "--record", "bad\x00name"])
    assert code == 2
    assert "source.record: cannot write bad\\x00name" in capsys.readouterr().err
