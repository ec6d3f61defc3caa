"""Text from outside reaches the terminal and the logs as plain, one-line text with no secret:
the helpers, the log formatter, the headless process against a hostile feed over a real socket,
and the configuration commands."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.server import serve

from stockup_tui.untrusted import SafeFormatter, printable, redact, safe
from tests.helpers import headless_on_feed

CMD = [sys.executable, "-m", "stockup_tui"]
HOSTILE = "\u001b]0;TITLE\u0007red\u001b[31m\r\n2026-01-01 00:00:00 ERROR forged: line\u202egnp.exe"


def test_control_characters_become_visible_escapes() -> None:
    assert printable("plain [b]markup[/b] stays text") == "plain [b]markup[/b] stays text"
    out = printable(HOSTILE)
    assert out.isprintable() and "\n" not in out and "\x1b" not in out
    assert "\\x1b]0;TITLE\\x07" in out and "\\r\\n2026" in out and "\\u202e" in out
    assert printable("x" * 10, limit=5) == "xxxx…"


def test_secrets_in_urls_and_messages_are_masked() -> None:
    cases = {
        "ws://ws.finnhub.io/?token=abc123def": "ws://ws.finnhub.io/?token=***",
        "connect failed: InvalidURI: ws://:18799?token=s3cr3t isn't a valid URI": (
            "connect failed: InvalidURI: ws://:18799?token=*** isn't a valid URI"
        ),
        "wss://h/x?a=1&apikey=K&b=2": "wss://h/x?a=1&apikey=***&b=2",
        "amqp://stockup:hunter2@mq:5672/stocks": "amqp://stockup:***@mq:5672/stocks",
        "no secret here": "no secret here",
    }
    for text, want in cases.items():
        assert redact(text) == want


@given(st.text())
def test_safe_text_is_always_one_printable_line(text: str) -> None:
    out = safe(text)
    assert out.isprintable()
    assert "\n" not in out and "\r" not in out


def test_log_records_cannot_forge_lines_or_show_secrets() -> None:
    fmt = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "feed said %s", (HOSTILE,), None)
    line = fmt.format(record)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    try:
        raise ValueError("bad ws://h/?token=tok-123\x1b[2J")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    text = fmt.format(record)
    assert "tok-123" not in text and "\x1b" not in text
    assert text.count("\n") >= 2  # the traceback keeps its lines


async def test_a_hostile_feed_cannot_reach_the_terminal_or_forge_log_lines(tmp_path: Path) -> None:
    """A real websocket server sends error frames with escape codes and a forged log line;
    `--headless` must write them escaped, on one line each, stdout and stderr alike."""
    frame = orjson.dumps({"type": "error", "msg": HOSTILE}).decode()

    async def handler(ws) -> None:
        async for _ in ws:  # the subscriptions
            for _ in range(3):
                await ws.send(frame)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await headless_on_feed(port)
        try:
            assert proc.stdout is not None
            seen = b""
            while b"server_error=" not in seen:
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line, "the process ended"
                seen += line
        finally:
            proc.terminate()
            out, err = await asyncio.wait_for(proc.communicate(), 30)
    everything = seen + out + err
    assert b"\x1b" not in everything and b"\x07" not in everything
    assert b"\r" not in everything
    for line in everything.decode().splitlines():
        assert not line.startswith("2026-01-01 00:00:00 ERROR forged"), line
    assert b"\\x1b]0;TITLE" in err  # the error is logged, escaped


@pytest.mark.parametrize(
    "url",
    [
        "ws://:18799",
        "ws://user@127.0.0.1:18799",
        "ws://user:pw@127.0.0.1:18799",
        "ws://127.0.0.1:18799/#frag",
        "ws://127.0.0.1:abc",
        "ws://[::1",
        "wss://127.0.0.1:18799/?token=secret-token-123",
    ],
)
def test_a_url_that_cannot_be_dialled_is_a_clear_error_at_start(url: str) -> None:
    """Exit code 2 and one line naming the key, no traceback, and the token nowhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    env["FINNHUB_TOKEN"] = "secret-token-123"
    proc = subprocess.run(
        [*CMD, "--headless", "--source", "finnhub", "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "source.url:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "secret-token-123" not in proc.stderr + proc.stdout
    assert "pw@" not in proc.stderr


def test_config_command_prints_control_characters_escaped(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[log]\nfile = "/tmp/x\\ny\\u001b]0;T\\u0007"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    proc = subprocess.run(
        [*CMD, "--config", str(cfg), "config"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "/tmp/x\\ny\\x1b]0;T\\x07" in proc.stdout


def test_a_watchlist_name_must_be_printable(tmp_path: Path) -> None:
    from stockup_tui.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[watchlists]\n"evil\\u001b]0;T\\u0007" = ["AAPL"]\n')
    with pytest.raises(ConfigError, match="printable"):
        load_config(cfg, environ={})


def test_a_failing_thread_is_one_log_line_never_a_traceback_on_the_terminal(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from stockup_tui import cli

    def boom() -> None:
        raise ConnectionError("broker gone \x1b[2J")

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    app_log = logging.getLogger("stockup_tui")
    # Only this handler: whatever other tests left on the root logger stays out of it.
    before = threading.excepthook, app_log.propagate, app_log.level
    app_log.addHandler(handler)
    app_log.propagate = False
    app_log.setLevel(logging.INFO)
    threading.excepthook = cli._log_thread_error  # what `stockup-tui` installs at start
    try:
        thread = threading.Thread(target=boom, name="kafka-producer")
        thread.start()
        thread.join()
    finally:
        threading.excepthook, app_log.propagate, _ = before
        app_log.setLevel(before[2])
        app_log.removeHandler(handler)
    assert "Traceback" not in capfd.readouterr().err
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = SafeFormatter("%(message)s").format(errors[0])
    assert line == "thread kafka-producer failed: ConnectionError: broker gone \\x1b[2J"


async def _refusing_server():
    """A websocket endpoint that refuses every handshake (HTTP 403), as Finnhub does for a
    bad token; the client retries and reports the failure."""

    def refuse(connection, request):
        return connection.respond(403, "no\n")

    return serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse)


async def test_the_token_stays_out_of_stdout_stderr_and_the_log_file(tmp_path: Path) -> None:
    token = "secret-token-987"
    log_file = tmp_path / "stockup.log"
    async with await _refusing_server() as server:
        port = server.sockets[0].getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
        env |= {"PYTHONUNBUFFERED": "1", "FINNHUB_TOKEN": token}
        proc = await asyncio.create_subprocess_exec(
            *CMD, "--headless", "--source", "finnhub", "--url", f"ws://127.0.0.1:{port}/",
            "--symbols", "AAPL", "--status-interval", "0.3", "--set", f"log.file={log_file}",
            "--log-level", "DEBUG", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            seen = b""

            def logged_failure() -> bool:
                return log_file.exists() and b"connect failed" in log_file.read_bytes()

            while not logged_failure():  # a status line at least every 0.3 s
                seen += await asyncio.wait_for(proc.stdout.readline(), 30)
        finally:
            proc.terminate()
            out, err = await asyncio.wait_for(proc.communicate(), 30)
    logged = log_file.read_text()
    assert "HTTP 403" in logged
    for text in (seen.decode(), out.decode(), err.decode(), logged):
        assert token not in text


async def test_the_token_stays_off_the_screen(tmp_path: Path) -> None:
    from textual.widgets import Static

    from stockup_tui.app import StockupApp
    from stockup_tui.config import load_config
    from stockup_tui.engine.host import EngineHost
    from stockup_tui.widgets.events import EventLog

    token = "secret-token-654"
    async with await _refusing_server() as server:
        port = server.sockets[0].getsockname()[1]
        flags = {"source.kind": "finnhub", "source.url": f"ws://127.0.0.1:{port}/"}
        loaded = load_config(
            overrides=flags | {"ui.show_log": True}, environ={"FINNHUB_TOKEN": token}
        )
        app = StockupApp(loaded, EngineHost(loaded.settings), config_path=tmp_path / "c.toml")
        async with app.run_test(size=(160, 45)) as pilot:
            deadline = asyncio.get_running_loop().time() + 20
            while not app.engine.stats.source.last_error:
                assert asyncio.get_running_loop().time() < deadline, "no connect error shown"
                await pilot.pause(0.05)
            await pilot.pause(0.5)  # a refresh or two of the panes
            screen = app.export_screenshot()
            events = "\n".join(line for _, line, *_ in app.query_one(EventLog).events)
            status = str(app.query_one("#statusbar", Static).render())
    assert "403" in screen or "403" in events
    for text in (screen, events, status):
        assert token not in text
