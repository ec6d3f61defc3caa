"""A stable `group_instance_id` per analyzer process, for Kafka's static group membership.

With static membership a restarted analyzer rejoins under the id it had: the coordinator hands it
its partitions back at once, with no rebalance, where a new (dynamic) member waits for the dead
one's session to time out. The id must be the same after a restart and different for two
analyzers running at once, without asking the user: by default it is the host name plus the
first *slot* number whose lock file this process can hold (``<user data dir>/kafka/<group>.<n>
.lock``, an `flock` the system releases when the process ends, even by `kill -9`). The first
analyzer of a group on a host is slot 0, a second one slot 1; a restarted one takes the slot
its predecessor held. `kafka.instance_id` sets the id explicitly (one per process, then), and
`kafka.static_membership = false` goes back to dynamic membership.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path
from urllib.parse import quote

import platformdirs

from stockup_tui.config import APP_NAME, KafkaConfig

log = logging.getLogger(__name__)

MAX_SLOTS = 64


class InstanceId:
    """The claimed id (None: dynamic membership) and the lock that keeps it ours."""

    def __init__(self, value: str | None, fd: int | None = None) -> None:
        self.value = value
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def lock_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME)) / "kafka"


def claim_instance_id(cfg: KafkaConfig, directory: Path | None = None) -> InstanceId:
    """The group instance id this process uses (see the module docstring)."""
    if not cfg.static_membership:
        return InstanceId(None)
    if cfg.instance_id:
        return InstanceId(cfg.instance_id)
    host = socket.gethostname() or "host"
    directory = directory or lock_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("Kafka: no static membership (cannot create %s: %s)", directory, exc)
        return InstanceId(None)
    group = quote(cfg.group_id, safe="")
    for slot in range(MAX_SLOTS):
        path = directory / f"{group}.{slot}.lock"
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            log.warning("Kafka: no static membership (cannot open %s: %s)", path, exc)
            return InstanceId(None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # another analyzer of this group on this host holds the slot
            continue
        return InstanceId(f"{cfg.client_id}-{host}-{slot}", fd)
    log.warning(
        "Kafka: %d analyzers of group %s on this host; dynamic membership", MAX_SLOTS, group
    )
    return InstanceId(None)
