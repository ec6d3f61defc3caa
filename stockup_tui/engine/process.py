"""The process's own resource figures (CPU, memory, network), sampled once a stats tick.

`ProcessMeter.sample()` is called by the pipeline when it rebuilds `PipelineStats` (once a
second), so the screen, the status line and the InfluxDB ops measurement read one sample and
psutil is asked once, not by every reader. CPU is the process's share of one core since the
previous sample (100% = one core busy). Network bytes are the host's counters: psutil cannot
attribute sockets' bytes to a process without elevated rights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from stockup_tui.engine.stats import RateMeter


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    cpu_percent: float  # since the previous sample; 100 = one core
    rss_bytes: int
    threads: int
    net_sent_bytes: int  # host-wide counters, cumulative since boot
    net_recv_bytes: int
    net_sent_per_s: float
    net_recv_per_s: float


class ProcessMeter:
    """Samples this process; cheap (a few /proc reads), never raises."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # primes the CPU counter: the first real sample is a delta
        self._net_rates = RateMeter()

    def sample(self) -> ProcessFigures | None:
        try:
            with self._proc.oneshot():
                cpu = self._proc.cpu_percent(None)
                rss = self._proc.memory_info().rss
                threads = self._proc.num_threads()
        except (psutil.Error, OSError):
            return None
        sent = recv = 0
        sent_rate = recv_rate = 0.0
        try:
            net = psutil.net_io_counters()
        except (psutil.Error, OSError, RuntimeError):
            net = None
        if net is not None:
            sent, recv = int(net.bytes_sent), int(net.bytes_recv)
            now = time.monotonic()
            # Host-wide counters can go back (an interface gone): no negative rate.
            sent_rate = max(0.0, self._net_rates.rate("sent", sent, now))
            recv_rate = max(0.0, self._net_rates.rate("recv", recv, now))
        return ProcessFigures(
            cpu_percent=float(cpu),
            rss_bytes=int(rss),
            threads=int(threads),
            net_sent_bytes=sent,
            net_recv_bytes=recv,
            net_sent_per_s=sent_rate,
            net_recv_per_s=recv_rate,
        )
