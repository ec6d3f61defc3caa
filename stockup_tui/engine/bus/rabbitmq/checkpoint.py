"""The analyzer's position in a RabbitMQ stream, kept in a small file so a restart is exact.

After each acknowledged delivery the consumer records: the stream offset of the last processed
message (`offset`, with a CRC of its body to recognise the stream again) and the analyzer's
checkpoint: `replay_from`, the stream offset from which a restarted analyzer must replay to
rebuild its state (every message before it only held trades that no window still to be emitted
can hold), and `watermark_ms`, the watermark in force there. On start the consumer attaches at
`replay_from`, starts the analyzer at that watermark and marks the messages up to `offset` as
replays (applied, not emitted).

The file is replaced atomically (write a temporary file, then rename), so a crash at any moment
leaves either the old or the new checkpoint. Writes follow the acks but at most every
`MIN_INTERVAL` (20 ms; the last state is always written within that time, and on close): at
thousands of acks per second a write per ack would cost more than the rest of the consumer.
After a `kill -9` the file may therefore be up to 20 ms behind: those messages are processed
again as live, their snapshots emitted a second time, byte for byte the same (the state is
rebuilt from the stream, so nothing is counted twice). It is not fsynced: after a power cut it
may be older or unreadable, in which case the analyzer starts afresh (and says so).

Default location: ``<user data dir>/stockup-tui/rabbitmq/<vhost>@<queue>.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import orjson
import platformdirs

from stockup_tui.config import APP_NAME
from stockup_tui.engine.resilience import ErrorLatch

log = logging.getLogger("stockup_tui.engine.bus.rabbitmq.bus")

VERSION = 2  # 1: watermark_ms was the newest trade time, replay_from a time-based guess
MIN_INTERVAL = 0.02  # seconds between writes


def default_checkpoint_path(vhost: str, queue: str) -> Path:
    name = f"{quote(vhost, safe='')}@{quote(queue, safe='')}.json"
    return Path(platformdirs.user_data_dir(APP_NAME)) / "rabbitmq" / name


@dataclass(frozen=True, slots=True)
class StreamCheckpoint:
    vhost: str
    queue: str
    offset: int  # last processed stream offset
    crc: int | None  # zlib.crc32 of that message's body
    watermark_ms: int | None  # the analyzer's watermark at replay_from
    replay_from: int  # a restart replays from this offset (inclusive)
    saved_at: float = 0.0
    version: int = VERSION


class CheckpointFile:
    """Loads and atomically saves one `StreamCheckpoint`; failures are logged, never raised."""

    def __init__(self, path: Path, vhost: str, queue: str) -> None:
        self.path = path
        self.vhost = vhost
        self.queue = queue
        # Said once until a save works again: a full disk fails every save the same way.
        self._errors = ErrorLatch(
            log,
            "cannot write the RabbitMQ checkpoint %(path)s (%(error)s): a restart will replay "
            "more or emit again",
            level=logging.ERROR,
            distinct=False,
            path=path,
        )
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._pending: tuple[int, bytes, int | None, int] | None = None
        self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def update(self, offset: int, body: bytes, watermark_ms: int | None, replay_from: int) -> None:
        """Records a new position; written now, or within MIN_INTERVAL (see the module doc)."""
        self._pending = (offset, body, watermark_ms, replay_from)
        wait = MIN_INTERVAL - (time.monotonic() - self._last_write)
        if wait <= 0:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self.flush)
            except RuntimeError:  # no loop (tests, shutdown): write now
                self.flush()

    def flush(self) -> None:
        """Writes the pending position, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None:
            offset, body, watermark_ms, replay_from = pending
            self._last_write = time.monotonic()
            self.save(offset, zlib.crc32(body), watermark_ms, replay_from)

    def load(self) -> StreamCheckpoint | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning(
                "cannot read the RabbitMQ checkpoint %s (%s); starting afresh", self.path, exc
            )
            return None
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict) and data.get("version") != VERSION:
                log.warning(
                    "ignoring the RabbitMQ checkpoint %s: written by another version of "
                    "stockup-tui; reading the stream from its start",
                    self.path,
                )
                return None
            cp = StreamCheckpoint(**data)
            if not (
                cp.version == VERSION
                and type(cp.offset) is int
                and cp.offset >= 0
                and type(cp.replay_from) is int
                and 0 <= cp.replay_from <= cp.offset + 1
                and (cp.crc is None or type(cp.crc) is int)
                and (cp.watermark_ms is None or type(cp.watermark_ms) is int)
            ):
                raise ValueError("fields out of range")
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            log.warning("ignoring the unreadable RabbitMQ checkpoint %s (%s)", self.path, exc)
            return None
        if (cp.vhost, cp.queue) != (self.vhost, self.queue):
            log.warning(
                "ignoring the RabbitMQ checkpoint %s: it belongs to queue '%s' on vhost '%s'",
                self.path,
                cp.queue,
                cp.vhost,
            )
            return None
        return cp

    def save(
        self, offset: int, crc: int | None, watermark_ms: int | None, replay_from: int
    ) -> None:
        cp = StreamCheckpoint(
            self.vhost, self.queue, offset, crc, watermark_ms, replay_from, time.time()
        )
        try:
            try:
                self._tmp.write_bytes(orjson.dumps(asdict(cp)))
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._tmp.write_bytes(orjson.dumps(asdict(cp)))
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._errors.set(str(exc))
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            return
        self._errors.clear()
