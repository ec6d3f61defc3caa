"""The InfluxDB sink: window metrics and operational figures, never stalling the pipeline.

`write()` runs on the event loop and only appends the emitted snapshots to a bounded buffer
(`sinks.influx.buffer_points`, counted in points = snapshots x windows); past the bound the new
points are dropped and counted (`influx_buffer_full`), never silently. Everything else happens on
the sink's own thread:

- connect: `api = auto` reads `X-Influxdb-Version` from `/ping` (1.x before 1.8 -> v1 `/write`,
  anything else -> `/api/v2/write`), then creates the database / bucket with its retention when it
  is missing and `create = true` (a refusal is reported, not fatal);
- encode the snapshots to line protocol (`influx/lines.py`), plus the `pipeline_ops` /
  `pipeline_drops` points every `ops_interval` (and once more on close);
- write: v2 through influxdb-client's batching `WriteApi` (its success / retry / error callbacks
  keep the counters), v1 through `InfluxHttp.write_v1` in batches of `batch_size`, at least
  every `flush_interval`. A server that is down or slow is retried with jittered exponential
  backoff (1 s doubling to 5 s) for as long as the points fit the buffer; a refusal (bad
  request, no permission) drops that batch, counted as `influx_rejected`.

`close()` drains: it writes what is buffered and waits while the server makes progress; after
`timeout` seconds without a successful write the rest is counted as `influx_unsent_at_exit`.
Secrets never reach a log line, an error text or the screen (`Redactor`).

Longer than most modules on purpose: the sink's thread is one state machine (connect, buffer,
drain at close, give up) whose parts share its lock and counters; the writes themselves are in
`writers.py`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from stockup_tui.config import InfluxConfig
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolSnapshot
from stockup_tui.engine.resilience import ErrorLatch
from stockup_tui.engine.sinks.influx.http import (
    InfluxHttp,
    InfluxHttpError,
    Redactor,
    ServerInfo,
    basic_auth,
    choose_api,
    ensure_database_v1,
    safe_url,
)
from stockup_tui.engine.sinks.influx.lines import WindowLines, ops_points, point_lines
from stockup_tui.engine.sinks.influx.writers import (
    V1Writer,
    V2Writer,
    describe_error,
    retry_backoff,
)
from stockup_tui.engine.stats import PipelineStats, SinkFigures

log = logging.getLogger(__name__)

# influxdb-client logs a warning on every retried request; the sink reports state changes itself.
logging.getLogger("influxdb_client.client.write.retry").setLevel(logging.ERROR)


class InfluxSink:
    """See the module docstring. Build it, `start()` it, feed `write()`, `await close()`."""

    name = "influx"

    def __init__(
        self,
        cfg: InfluxConfig,
        *,
        drops: Drops | None = None,
        role: str = "all",
        host: str | None = None,
        stats_source: Callable[[], PipelineStats | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.drops = drops or Drops()
        self.role = role
        self.host = host or socket.gethostname()
        self.stats_source = stats_source  # the pipeline's latest PipelineStats, for ops points
        token = cfg.token.get_secret_value() if cfg.token else None
        password = cfg.password.get_secret_value() if cfg.password else None
        self._token = token
        self._password = password
        pairs = [f"{cfg.username}:{password or ''}"] if cfg.username and password else []
        self._redact = Redactor(
            token, password, *pairs, *(token.split(":", 1)[1:] if token else ())
        )
        self.endpoint = safe_url(cfg.url)
        self._encoder = WindowLines()
        self._cond = threading.Condition()
        self._queue: deque[SymbolSnapshot | str] = deque()
        self._queued = 0  # points waiting in _queue
        self._inflight = 0  # points handed to the writer, not yet written or dropped
        self._first_queued_at = 0.0
        self.written = 0
        self.retries = 0
        self.dropped = 0
        self.state = "starting"
        self.api: str | None = None
        self.server: ServerInfo | None = None
        self.last_error: str | None = None
        self.last_retry_error: str | None = None
        self._connect_errors = ErrorLatch(log, "influx: cannot connect (%(error)s); retrying")
        # A write retried until it works is said once, with the recovery: not once a retry.
        self._write_errors = ErrorLatch(
            log,
            "influx: write failed, retrying with backoff (buffer %(buffer)d points): %(error)s",
            distinct=False,
            recovered="influx: %(endpoint)s is back; buffered points are being written",
            buffer=cfg.buffer_points,
            endpoint=self.endpoint,
        )
        self._last_progress = time.monotonic()
        self._closing = False
        self._pause = threading.Event()  # never set: an interruptible-looking sleep
        self._next_ops = 0.0
        self._thread: threading.Thread | None = None
        self._writer: V1Writer | V2Writer | None = None
        self._http: InfluxHttp | None = None

    # -- the event loop's side ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="influx-sink", daemon=True)
            self._thread.start()

    def write(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        """Appends to the bounded buffer; O(snapshots), never blocks on the network."""
        refused = 0
        with self._cond:
            room = self.cfg.buffer_points - self._queued - self._inflight
            accepted = 0
            for snap in snapshots:
                n = len(snap.windows)
                if not n:
                    continue
                if self._closing or n > room:
                    refused += n
                    continue
                if not self._queued and not accepted:
                    self._first_queued_at = time.monotonic()
                self._queue.append(snap)
                room -= n
                accepted += n
            if accepted:
                self._queued += accepted
                self._cond.notify()
        if refused:
            self._count_drop("influx_buffer_full", refused)

    @property
    def pending(self) -> int:
        return self._queued + self._inflight

    def figures(self) -> SinkFigures:
        return SinkFigures(
            state=self.state,
            written=self.written,
            pending=self.pending,
            retries=self.retries,
            dropped=self.dropped,
            api=self.api or None,
            error=self.last_error or None,
        )

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            self._last_progress = time.monotonic()
            self._cond.notify_all()
        thread = self._thread
        # The thread drains while writes succeed and gives up `timeout` after the last one;
        # this bound only guards against a thread that hangs (it should never be reached).
        while thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, 0.5)
            if time.monotonic() - self._last_progress > self.cfg.timeout * 2 + 10:
                log.error("influx: the writer thread did not finish; giving up on it")
                break
        with self._cond:
            left = self._queued + self._inflight
            self._queue.clear()
            self._queued = self._inflight = 0
        if left:
            self._count_drop("influx_unsent_at_exit", left)
        if self.state != "failed":
            self.state = "closed"

    # -- counters (any thread) ---------------------------------------------------------------

    def _count_drop(self, reason: str, n: int, detail: str = "") -> None:
        with self._cond:
            self.dropped += n
        self.drops.add(reason, n, detail=detail)

    def on_written(self, n: int) -> None:
        with self._cond:
            self._inflight = max(0, self._inflight - n)
            self.written += n
            self._last_progress = time.monotonic()
            self.state = "connected"
            self._cond.notify_all()
        if self._write_errors.clear():
            self.last_error = None

    def on_retry(self, error: str) -> None:
        msg = self._redact(error)
        with self._cond:
            self.retries += 1
            self.state = "retrying"
            self.last_error = msg
            self.last_retry_error = msg
        self._write_errors.set(msg)

    def on_failed(self, n: int, reason: str, error: str, refused: int | None = None) -> None:
        msg = self._redact(error)
        with self._cond:
            self._inflight = max(0, self._inflight - n)
            self.last_error = msg
            self._cond.notify_all()
        lost = n if refused is None else min(n, refused)
        if lost:
            self._count_drop(reason, lost, detail=msg)
        if refused is not None and n > lost:  # a partial write: the rest is stored
            with self._cond:
                self.written += n - lost

    def give_up(self) -> bool:
        """At shutdown: stop retrying once nothing was written for `timeout` seconds."""
        return self._closing and time.monotonic() - self._last_progress > self.cfg.timeout

    def sleep(self, seconds: float) -> None:
        """Waits between attempts (without overshooting the shutdown deadline); the ops
        figures keep being buffered meanwhile."""
        if self._closing:
            left = self.cfg.timeout - (time.monotonic() - self._last_progress)
            seconds = max(0.0, min(seconds, left + 0.01))
        end = time.monotonic() + seconds
        while True:
            self._tick_ops()
            left = end - time.monotonic()
            if left <= 0:
                return
            self._pause.wait(min(left, max(0.001, self._next_ops - time.monotonic())))

    # -- the sink's thread -------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must be seen, and must not hang close()
            log.exception("influx sink failed")
            self.state = "failed"
            self.last_error = self._redact(f"{type(exc).__name__}: {exc}")
        finally:
            writer = self._writer
            self._writer = None
            if writer is not None:
                try:
                    writer.close()
                except Exception as exc:
                    log.error("influx: closing the writer failed: %s", self._redact(exc))
            if self._http is not None:
                self._http.close()

    def _run(self) -> None:
        cfg = self.cfg
        self._next_ops = time.monotonic() + cfg.ops_interval
        connect_backoff = retry_backoff()
        next_connect = 0.0
        final_ops = False
        while True:
            now = time.monotonic()
            if self._writer is None and now >= next_connect:
                try:
                    self._connect()
                    connect_backoff.reset()
                    self._connect_errors.clear()
                except InfluxHttpError as exc:
                    msg = self._redact(exc)
                    self.state = "down" if exc.retryable else "error"
                    self._connect_errors.set(msg)
                    self.last_error = msg
                    if exc.retryable:
                        self.retries += 1
                    next_connect = now + connect_backoff.next()
            self._tick_ops()
            closing = self._closing
            if closing and not final_ops:
                final_ops = True
                self._queue_ops()  # the last figures of the run
            writer = self._writer
            with self._cond:
                now = time.monotonic()
                if writer is None:
                    if closing and (not self._queued or self.give_up()):
                        return  # close() counts what is left as unsent
                    wake = min(next_connect, self._next_ops) if not closing else now + 0.2
                    self._cond.wait(max(0.001, min(wake, next_connect) - now))
                    continue
                ready = self._queued and (
                    self._queued >= cfg.batch_size
                    or isinstance(writer, V2Writer)  # its WriteApi batches
                    or now - self._first_queued_at >= cfg.flush_interval
                    or closing
                )
                if not ready:
                    if closing:
                        break
                    wait = self._next_ops - now
                    if self._queued:
                        wait = min(wait, self._first_queued_at + cfg.flush_interval - now)
                    self._cond.wait(max(0.001, wait))
                    continue
                items, n = self._take(cfg.batch_size)
            lines = self._encode(items)
            if len(lines) != n:  # never expected; keep the accounting right regardless
                with self._cond:
                    self._inflight += len(lines) - n
            if lines:
                writer.send(lines)
        # Closing with an empty buffer: the v2 WriteApi drains on close (its flush() does not).
        if isinstance(self._writer, V2Writer):
            writer, self._writer = self._writer, None
            writer.close()

    def _tick_ops(self) -> None:
        now = time.monotonic()
        if now >= self._next_ops:
            self._next_ops = now + self.cfg.ops_interval
            self._queue_ops()

    def _take(self, limit: int) -> tuple[list[SymbolSnapshot | str], int]:
        """Moves up to `limit` points from the queue to in flight (the lock is held)."""
        items: list[SymbolSnapshot | str] = []
        n = 0
        queue = self._queue
        while queue and n < limit:
            item = queue.popleft()
            items.append(item)
            n += 1 if isinstance(item, str) else len(item.windows)
        self._queued -= n
        self._inflight += n
        if self._queued:
            self._first_queued_at = time.monotonic()
        return items, n

    def _encode(self, items: list[SymbolSnapshot | str]) -> list[str]:
        lines: list[str] = []
        encode = self._encoder.lines
        for item in items:
            if isinstance(item, str):
                lines.append(item)
            else:
                lines.extend(encode(item))
        return lines

    def _queue_ops(self) -> None:
        source = self.stats_source
        if source is None:
            return
        stats = source()
        if stats is None:
            return
        try:
            lines = point_lines(
                ops_points(
                    stats,
                    host=self.host,
                    role=self.role,
                    at_ms=int(time.time() * 1000),
                    sink=self.figures(),
                )
            )
        except Exception as exc:  # a figure of an unexpected type must not stop the sink
            log.exception("influx: building the ops points failed")
            self.last_error = self._redact(f"ops points: {exc}")
            return
        with self._cond:
            room = self.cfg.buffer_points - self._queued - self._inflight
            take = lines[: max(0, room)]
            if take:
                if not self._queued:
                    self._first_queued_at = time.monotonic()
                self._queue.extend(take)
                self._queued += len(take)
        if len(take) < len(lines):
            self._count_drop("influx_buffer_full", len(lines) - len(take))

    # -- connecting --------------------------------------------------------------------------

    def _auth_v1(self) -> dict[str, str]:
        cfg = self.cfg
        if cfg.username:
            return basic_auth(cfg.username, self._password)
        if self._token and ":" in self._token:  # 1.8+: `user:password`
            user, _, password = self._token.partition(":")
            return basic_auth(user, password)
        return {}

    def _connect(self) -> None:
        """Detects the API, creates the database/bucket, builds the writer (this thread)."""
        cfg = self.cfg
        if self._http is None:
            self._http = InfluxHttp(
                cfg.url, timeout=cfg.timeout, headers=self._auth_v1(), redact=self._redact
            )
        info = self._http.ping()  # also proves the server answers; raises when it does not
        self.server = info
        api = choose_api(cfg.api, info)
        version = f" (InfluxDB {info.version})" if info.version else ""
        if cfg.create:
            if api == "v1" or (info.major is not None and info.major < 2):
                self.ensure_database()
            else:
                self._ensure_bucket()
        if api == "v1":
            self._writer = V1Writer(self, self._http, cfg.bucket)
        else:
            token = self._token
            if token is None and cfg.username:  # 1.8's v2 API takes `user:password`
                token = f"{cfg.username}:{self._password or ''}"
            self._writer = V2Writer(self, token)
        self.api = api
        if self.state in ("starting", "down", "error"):
            self.state = "connected"
        log.info(
            "influx: writing to %s%s through %s, bucket %r",
            self.endpoint,
            version,
            self._writer.label,
            cfg.bucket,
        )

    def ensure_database(self) -> None:
        assert self._http is not None
        try:
            note = ensure_database_v1(self._http, self.cfg.bucket, self.cfg.retention)
        except InfluxHttpError as exc:
            if exc.retryable:
                raise
            self.last_error = self._redact(f"cannot create database: {exc}")
            log.warning("influx: %s (writing anyway)", self.last_error)
            return
        if note:
            level = logging.WARNING if "not the database's default" in note else logging.INFO
            log.log(level, "influx: %s", note)

    def _ensure_bucket(self) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

        cfg = self.cfg
        try:
            with InfluxDBClient(
                url=cfg.url, token=self._token, org=cfg.org, timeout=int(cfg.timeout * 1000)
            ) as client:
                api = client.buckets_api()
                if api.find_bucket_by_name(cfg.bucket) is None:
                    api.create_bucket(
                        bucket_name=cfg.bucket,
                        retention_rules=BucketRetentionRules(
                            type="expire", every_seconds=round(cfg.retention)
                        ),
                        org=cfg.org,
                    )
                    log.info("influx: created bucket %r", cfg.bucket)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status is None or status >= 500:
                # No answer at all: the server went away between /ping and here; retry later.
                raise InfluxHttpError(
                    self._redact(f"bucket check failed: {describe_error(exc)}"), retryable=True
                ) from None
            self.last_error = self._redact(f"cannot create bucket: {describe_error(exc)}")
            log.warning("influx: %s (writing anyway)", self.last_error)
