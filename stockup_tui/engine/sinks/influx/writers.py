"""How the InfluxDB sink's points reach the server: v1 `/write` in blocking batches, or v2
through influxdb-client's batching `WriteApi`; both retry with jittered backoff while the sink
says so and report every outcome to it (`WriteReport`), which keeps the counters.
"""

from __future__ import annotations

from typing import Protocol

from stockup_tui.config import InfluxConfig
from stockup_tui.engine.resilience import Backoff
from stockup_tui.engine.sinks.influx.http import InfluxHttp, InfluxHttpError, split_bucket


class WriteReport(Protocol):
    """What a writer tells the sink (from the writer's thread) and asks it."""

    cfg: InfluxConfig
    last_retry_error: str | None

    def give_up(self) -> bool: ...
    def on_written(self, n: int) -> None: ...
    def on_retry(self, error: str) -> None: ...
    def on_failed(self, n: int, reason: str, error: str, refused: int | None = None) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def ensure_database(self) -> None: ...


RETRY_FIRST = 1.0  # seconds before the first retry
RETRY_MAX = 5.0  # longest wait between two attempts
RETRY_JITTER = (0.5, 1.0)  # each wait times a factor drawn from this range


def retry_backoff() -> Backoff:
    return Backoff(RETRY_FIRST, RETRY_MAX, jitter=RETRY_JITTER)


class Abort(Exception):
    """Raised from influxdb-client's retry callback to end a retry loop at shutdown."""


class V1Writer:
    """Blocking batches to `/write?db=&rp=&precision=ms`, retried until written or given up."""

    def __init__(self, sink: WriteReport, http: InfluxHttp, bucket: str) -> None:
        self.sink = sink
        self.http = http
        self.db, self.rp = split_bucket(bucket)
        self.label = "v1 /write"

    def send(self, lines: list[str]) -> None:
        sink = self.sink
        body = "\n".join(lines).encode()
        n = len(lines)
        retry = retry_backoff()
        recreated = False
        while True:
            if sink.give_up():  # shutting down and the server has not answered for a while
                sink.on_failed(n, "influx_unsent_at_exit", sink.last_retry_error or "")
                return
            try:
                self.http.write_v1(body, self.db, self.rp)
            except InfluxHttpError as exc:
                if exc.db_missing and sink.cfg.create and not recreated:
                    recreated = True
                    sink.ensure_database()
                    continue
                if not exc.retryable:
                    sink.on_failed(n, "influx_rejected", str(exc), refused=exc.dropped)
                    return
                sink.on_retry(str(exc))
                sink.sleep(retry.next())
                continue
            sink.on_written(n)
            return

    def close(self) -> None:
        self.http.close()


class V2Writer:
    """influxdb-client's batching `WriteApi`: batches, retries with backoff on its own thread."""

    def __init__(self, sink: WriteReport, token: str | None) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import WriteOptions, WriteType
        from reactivex.scheduler import ThreadPoolScheduler

        cfg = sink.cfg
        self.sink = sink
        self.bucket = cfg.bucket
        self.org = cfg.org
        self.label = "v2 /api/v2/write"
        self._scheduler = ThreadPoolScheduler(1)  # its own writer thread, not the shared default
        self.client = InfluxDBClient(
            url=cfg.url, token=token, org=cfg.org, timeout=int(cfg.timeout * 1000)
        )
        options = WriteOptions(
            write_type=WriteType.batching,
            batch_size=cfg.batch_size,
            flush_interval=max(1, int(cfg.flush_interval * 1000)),
            retry_interval=int(RETRY_FIRST * 1000),
            max_retry_delay=int(RETRY_MAX * 1000),
            exponential_base=2,
            # Retry while the points fit the buffer: the bound, not a retry count, limits the loss.
            max_retries=1_000_000_000,
            max_retry_time=10 * 365 * 86_400 * 1000,
            max_close_wait=3_600_000,  # close() ends sooner: the retry callback aborts (Abort)
            write_scheduler=self._scheduler,
        )
        self.write_api = self.client.write_api(
            write_options=options,
            success_callback=self._success,
            error_callback=self._error,
            retry_callback=self._retry,
        )

    @staticmethod
    def _lines(data: bytes | str) -> int:
        if isinstance(data, str):
            data = data.encode()
        return data.count(b"\n") + 1 if data else 0

    def _success(self, conf: tuple[str, str, str], data: bytes) -> None:
        self.sink.on_written(self._lines(data))

    def _retry(self, conf: tuple[str, str, str], data: bytes, exc: Exception) -> None:
        self.sink.on_retry(describe_error(exc))
        if self.sink.give_up():
            raise Abort("gave up at shutdown")

    def _error(self, conf: tuple[str, str, str], data: bytes, exc: Exception) -> None:
        n = self._lines(data)
        if isinstance(exc, Abort) or "gave up at shutdown" in str(exc):
            self.sink.on_failed(n, "influx_unsent_at_exit", self.sink.last_retry_error or "")
        else:
            self.sink.on_failed(n, "influx_rejected", describe_error(exc))

    def send(self, lines: list[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision

        self.write_api.write(
            self.bucket,
            self.org,
            record=lines,
            # influxdb-client annotates the precision as WritePrecision, whose members are strs
            write_precision=WritePrecision.MS,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        try:
            self.write_api.close()  # drains its buffer (its flush() does nothing)
        finally:
            self.client.close()
            self._scheduler.executor.shutdown(wait=False)


def describe_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None) or getattr(exc, "message", None)
    if status and body:
        return f"HTTP {status}: {body}"
    reason = getattr(exc, "reason", None)
    if reason is not None and not isinstance(reason, str):
        return f"{type(reason).__name__}: {reason}"
    return f"{type(exc).__name__}: {exc}"
