"""Previous closes over a real socket: from the simulator's REST `/quote`, and from a server
that answers badly (every failure counted and said, nothing shown)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest

from stockup_tui.engine.simulator import MarketSimulator, SimulatorSettings
from stockup_tui.engine.sources.previous_close import MAX_BODY, PreviousCloses, parse_close
from tests.helpers import wait_until


def test_an_answer_gives_a_close_none_or_the_reason() -> None:
    assert parse_close(b'{"c":190.1,"pc":188.5}') == 188.5
    assert parse_close(b'{"c":0,"pc":0}') is None  # Finnhub: an unknown symbol
    for body, why in [
        (b"<html>", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"pc":"188"}', "no numeric pc"),
        (b'{"pc":-1}', "not a price"),
        (b'{"pc":1e300}', "not a price"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_close(body)


async def test_closes_come_from_the_simulators_rest_endpoint() -> None:
    sim = MarketSimulator(SimulatorSettings(seed=3))
    await sim.start()
    closes = PreviousCloses(f"http://127.0.0.1:{sim.port}/api/v1", "tok", spacing=0.0)
    task = asyncio.get_running_loop().create_task(closes.run())
    try:
        closes.want(["AAPL", "MSFT"])
        await wait_until(lambda: len(closes.closes) == 2, what="both closes")
        closes.want(["AAPL", "MSFT", "TSLA"])  # a symbol added: fetched at once
        await wait_until(lambda: "TSLA" in closes.closes, what="the new symbol's close")
    finally:
        task.cancel()
        await sim.stop()
    assert closes.closes == {s: sim.market.previous_close(s) for s in ("AAPL", "MSFT", "TSLA")}
    assert closes.errors == 0


class _Hostile(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        symbol = self.path.split("symbol=")[1].split("&")[0]
        body = {
            "BIG": b'{"pc": 1' + b"0" * (MAX_BODY + 10) + b"}",
            "NAN": b'{"pc": NaN}',
            "ESC": b'{"pc": "\\u001b[2J"}',
            "ZERO": b'{"pc": 0}',
        }.get(symbol, b'{"pc": 42.5}')
        self.send_response(500 if symbol == "FAIL" else 200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def hostile() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


async def test_bad_answers_are_counted_and_nothing_shown(hostile: int) -> None:
    closes = PreviousCloses(f"http://127.0.0.1:{hostile}/api/v1", "s3cret", spacing=0.0)
    task = asyncio.get_running_loop().create_task(closes.run())
    try:
        closes.want(["BIG", "NAN", "ESC", "ZERO", "FAIL", "GOOD"])
        await wait_until(lambda: closes.errors == 4 and "GOOD" in closes.closes, what="answers")
    finally:
        task.cancel()
    assert closes.closes == {"GOOD": 42.5}  # ZERO: an unknown symbol, no close and no error
    assert closes.last_error is not None
    assert "s3cret" not in closes.last_error and closes.last_error.isprintable()
