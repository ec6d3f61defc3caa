"""Each watchlist symbol's previous close, from a Finnhub-protocol REST `/quote` (Finnhub's
own, or the simulator's on its websocket port): what the screen's day change is measured from.

The trades feed carries no reference price, so this is the one REST call the app makes: once
per symbol when it joins the watchlist and again every `refresh` seconds (the close changes once
a day), one request at a time and `spacing` seconds apart (Finnhub's free plan allows 60 calls a
minute). What comes back is untrusted: a body over `MAX_BODY` bytes, not JSON, or a `pc` that is
not a positive finite price is ignored and counted in `errors`, its reason kept in
`last_error` (secrets masked) and logged once per distinct reason; `pc: 0` is Finnhub's answer
for a symbol it does not know: no close, no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import urllib.request
from collections.abc import Iterable
from urllib.parse import urlencode

import orjson

from stockup_tui.engine.codec import MAX_PRICE
from stockup_tui.untrusted import safe

log = logging.getLogger(__name__)

MAX_BODY = 65_536
TIMEOUT_S = 10.0
RETRY_S = 60.0  # after a failed fetch


def _get(url: str) -> bytes:
    """One GET, at most MAX_BODY bytes of body (urllib: no new dependency for one call)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        body: bytes = response.read(MAX_BODY + 1)  # urlopen's answer is untyped (Any)
    if len(body) > MAX_BODY:
        raise ValueError(f"answer longer than {MAX_BODY} bytes")
    return body


def parse_close(body: bytes) -> float | None:
    """`pc` of a `/quote` answer; None for an unknown symbol (`pc` 0); ValueError otherwise."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"answer is not JSON ({exc})") from None
    if type(obj) is not dict:
        raise ValueError("answer is not a JSON object")
    pc = obj.get("pc")
    if not (type(pc) is int or type(pc) is float):  # exact: bool is not a number here
        raise ValueError("answer has no numeric pc")
    if pc == 0:
        return None
    if not (math.isfinite(pc) and 0 < pc <= MAX_PRICE):
        raise ValueError(f"pc {pc!r} is not a price")
    return float(pc)


class PreviousCloses:
    """Fetches and keeps previous closes for the symbols wanted; `closes` is read by the screen
    (replaced whole on each change, safe to read from another thread)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        spacing: float = 1.1,
        refresh: float = 3600.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.spacing = spacing
        self.refresh = refresh
        self.closes: dict[str, float] = {}
        self._fetched_at: dict[str, float] = {}
        self._wanted: list[str] = []
        self._wake = asyncio.Event()
        self.errors = 0
        self.last_error: str | None = None
        self._logged: set[str] = set()

    def want(self, symbols: Iterable[str]) -> None:
        """The symbols to know the close of (the watchlist); new ones are fetched first."""
        self._wanted = list(dict.fromkeys(symbols))
        self._wake.set()

    def _due(self, now: float) -> list[str]:
        fetched = self._fetched_at
        return [s for s in self._wanted if now - fetched.get(s, -math.inf) >= self.refresh]

    async def run(self) -> None:
        """Until cancelled: fetch what is due, one at a time, then wait for a change."""
        while True:
            due = self._due(time.monotonic())
            for symbol in due:
                if symbol in self._wanted:  # still wanted since the list was taken
                    await self._fetch(symbol)
                    await asyncio.sleep(self.spacing)
            if not self._due(time.monotonic()):
                self._wake.clear()
                wait = min(self.refresh, 60.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _fetch(self, symbol: str) -> None:
        query = {"symbol": symbol} | ({"token": self._token} if self._token else {})
        url = f"{self.base_url}/quote?{urlencode(query)}"
        self._fetched_at[symbol] = time.monotonic()
        try:
            close = parse_close(await asyncio.to_thread(_get, url))
        except Exception as exc:  # network, HTTP status, body: the screen goes without
            self.errors += 1
            reason = safe(f"previous close of {symbol}: {type(exc).__name__}: {exc}", 300)
            self.last_error = reason
            kind = f"{type(exc).__name__}"
            if kind not in self._logged:
                self._logged.add(kind)
                log.warning("%s (said once per kind of failure)", reason)
            self._fetched_at[symbol] -= self.refresh - RETRY_S  # again in a minute, not an hour
            return
        closes = dict(self.closes)
        if close is None:
            closes.pop(symbol, None)
        else:
            closes[symbol] = close
        self.closes = closes
