"""Talking to an InfluxDB server over HTTP: version detection, database/bucket creation, and
the v1 `/write` endpoint that influxdb-client cannot use (InfluxDB 1.x before 1.8).

Everything here is blocking and runs on the sink's own thread, never on the event loop.
Credentials travel in the `Authorization` header only (never in a URL, so never in an error
message), and every error text leaving this module goes through `Redactor`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import urllib3

Api = Literal["v1", "v2"]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: str | None  # the X-Influxdb-Version header of /ping, None when absent
    major: int | None
    minor: int | None


def parse_version(header: str | None) -> tuple[int, int] | None:
    """`1.6.7~rc0` -> (1, 6); `v2.7.4` -> (2, 7); None when it is not a version."""
    if not header:
        return None
    m = re.match(r"\s*v?(\d+)\.(\d+)", header)
    return (int(m.group(1)), int(m.group(2))) if m else None


def choose_api(configured: Api | Literal["auto"], info: ServerInfo | None) -> Api:
    """`auto`: InfluxDB 1.x before 1.8 only has `/write` (v1); 1.8+, 2.x and servers that do
    not say their version (e.g. victoria-metrics) get `/api/v2/write`."""
    if configured != "auto":
        return configured
    major = info.major if info is not None else None
    minor = info.minor if info is not None else None
    if major is not None and minor is not None and (major, minor) < (1, 8):
        return "v1"
    return "v2"


def split_bucket(bucket: str) -> tuple[str, str | None]:
    """`stock/stock_rp` -> ("stock", "stock_rp"); `stock` -> ("stock", None)."""
    db, _, rp = bucket.partition("/")
    return db, (rp or None)


def influxql_duration(seconds: float) -> str:
    """A retention as an InfluxQL duration literal: 7 days -> `7d`."""
    ms = round(seconds * 1000)
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def safe_url(url: str) -> str:
    """The URL without any `user:password@` part, for logs and the screen."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class Redactor:
    """Replaces every secret (token, password, `user:password`) in a text with `***`."""

    def __init__(self, *secrets: str | None) -> None:
        found = {s for s in secrets if s and len(s) >= 3}
        for s in list(found):
            found.add(base64.b64encode(s.encode()).decode())
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: object, limit: int = 300) -> str:
        out = " ".join(str(text).split())
        for s in self._secrets:
            out = out.replace(s, "***")
        return out if len(out) <= limit else out[: limit - 1] + "…"


class InfluxHttpError(Exception):
    """A failed request: `status` None means no answer (refused, timeout, reset)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        dropped: int | None = None,
        db_missing: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.dropped = dropped  # points the server says it refused (partial writes)
        self.db_missing = db_missing


def basic_auth(username: str | None, password: str | None) -> dict[str, str]:
    if not username:
        return {}
    raw = f"{username}:{password or ''}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


class InfluxHttp:
    """A small blocking HTTP client for the endpoints influxdb-client does not cover."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.base = url.rstrip("/")
        self._headers = dict(headers or {})
        self._redact = redact or Redactor()
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=2, timeout=urllib3.Timeout(total=timeout), retries=False
        )

    def close(self) -> None:
        self._pool.clear()

    def _request(
        self, method: str, path: str, params: dict[str, str], body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urlencode(params)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        try:
            return self._pool.request(method, url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            # The exception text names the URL (no credentials are ever in it) and the cause.
            reason = getattr(exc, "reason", None) or exc
            raise InfluxHttpError(
                f"{safe_url(self.base)} unreachable: {self._redact(reason)}", retryable=True
            ) from None

    def ping(self) -> ServerInfo:
        resp = self._request("GET", "/ping", {})
        if resp.status >= 500:
            raise InfluxHttpError(
                f"/ping answered {resp.status}", status=resp.status, retryable=True
            )
        version = resp.headers.get("X-Influxdb-Version")
        parsed = parse_version(version)
        return ServerInfo(version, *(parsed or (None, None)))

    def query(self, q: str, *, db: str | None = None) -> list[dict[str, Any]]:
        """Runs InfluxQL through `/query` (POST, so it may create) and returns the results;
        a statement error or an HTTP error raises `InfluxHttpError`."""
        params = {"q": q}
        if db:
            params["db"] = db
        resp = self._request("POST", "/query", params)
        text = resp.data.decode("utf-8", "replace")
        if resp.status >= 300:
            raise InfluxHttpError(
                f"/query answered {resp.status}: {self._redact(_error_text(text))}",
                status=resp.status,
                retryable=resp.status >= 500 or resp.status == 429,
            )
        try:
            doc = orjson.loads(resp.data)
        except orjson.JSONDecodeError:
            raise InfluxHttpError(f"/query answered {self._redact(text[:200])}") from None
        results = doc.get("results") or []
        for r in results:
            if "error" in r:
                raise InfluxHttpError(self._redact(r["error"]), status=resp.status)
        if "error" in doc:
            raise InfluxHttpError(self._redact(doc["error"]), status=resp.status)
        return list(results)

    def write_v1(self, body: bytes, db: str, rp: str | None, precision: str = "ms") -> None:
        """POST `/write?db=&rp=&precision=`; raises `InfluxHttpError` saying whether to retry."""
        params = {"db": db, "precision": precision}
        if rp:
            params["rp"] = rp
        resp = self._request("POST", "/write", params, body)
        status = resp.status
        if status < 300:
            return
        msg = self._redact(_error_text(resp.data.decode("utf-8", "replace")))
        if status == 404 and "database not found" in msg:
            raise InfluxHttpError(f"/write: {msg}", status=status, db_missing=True)
        dropped = None
        m = re.search(r"dropped=(\d+)", msg)
        if m:
            dropped = int(m.group(1))
        raise InfluxHttpError(
            f"/write answered {status}: {msg}",
            status=status,
            retryable=status >= 500 or status == 429 or status == 408,
            dropped=dropped,
        )


def _error_text(body: str) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.strip()[:300]
    if isinstance(doc, dict):
        return str(doc.get("error") or doc.get("message") or doc)[:300]
    return str(doc)[:300]


# -- creating the database / bucket ----------------------------------------------------------


def ensure_database_v1(http: InfluxHttp, bucket: str, retention: float) -> str | None:
    """Creates `db` (with `rp` as its default policy) or the missing `rp`, via InfluxQL.

    Returns a note for the log (what was done, or why the policy is not the default), None when
    everything already existed. Raises `InfluxHttpError` (e.g. not permitted).
    """
    db, rp = split_bucket(bucket)
    duration = influxql_duration(retention)
    dbs = http.query("SHOW DATABASES")
    names = (
        {row[0] for s in dbs[0].get("series", []) for row in s.get("values", [])} if dbs else set()
    )
    if db not in names:
        q = f"CREATE DATABASE {quote_ident(db)} WITH DURATION {duration}"
        if rp:
            q += f" REPLICATION 1 NAME {quote_ident(rp)}"
        http.query(q)
        return f"created database {db!r}" + (f" with retention policy {rp!r}" if rp else "")
    if not rp:
        return None
    res = http.query(f"SHOW RETENTION POLICIES ON {quote_ident(db)}")
    policies = {
        row[0]: row
        for s in (res[0].get("series", []) if res else [])
        for row in s.get("values", [])
    }
    if rp in policies:
        return None
    http.query(
        f"CREATE RETENTION POLICY {quote_ident(rp)} ON {quote_ident(db)} "
        f"DURATION {duration} REPLICATION 1"
    )
    return (
        f"created retention policy {rp!r} on the existing database {db!r}; it is not the "
        f'database\'s default: InfluxQL queries must name it ("{rp}"."window_metrics"), as the '
        "shipped Grafana dashboards do"
    )
