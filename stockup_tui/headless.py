"""`stockup-tui --headless`: the same pipeline as the screen, as a service with a status line."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import time
from typing import TextIO

from stockup_tui import exits
from stockup_tui.config import Settings
from stockup_tui.engine.drops import describe_losses
from stockup_tui.engine.pipeline import Pipeline
from stockup_tui.engine.stats import PipelineStats
from stockup_tui.engine.wiring import build_pipeline
from stockup_tui.figures import fmt_ms, fmt_queue
from stockup_tui.untrusted import safe

log = logging.getLogger(__name__)


def status_line(st: PipelineStats, final: bool = False) -> str:
    """One line a person can read at a glance: rates, symbols, reconnects, drops, latency."""
    src, bus, an = st.source, st.bus, st.analyzer
    if final:
        state = "stopped"
    elif src.connected:
        state = "up"
    elif src.finished:
        state = "done"
    else:
        state = "DOWN" if src.connections else "connecting"
    gap = f" gap max {src.max_gap:.2f}s" if src.max_gap else ""
    drops = (
        " ".join(
            f"{k}={v}" + (f"({st.drop_bytes[k]:,}B)" if st.drop_bytes.get(k) else "")
            for k, v in sorted(st.drops.items())
            if v
        )
        or "none"
    )
    restarts = sum(s.restarts for s in st.stages)
    link = "" if bus.connected or final else " DOWN"
    if link and bus.last_error:
        link += f" ({bus.last_error[:120]})"
    influx = st.sinks.get("influx")
    sink = f" | influx {influx.state} pending {influx.pending}" if influx else ""
    backlog = "" if bus.backlog is None else f" backlog {bus.backlog:,}"
    behind = "" if an.behind is None else f" behind {an.behind:,.1f}s"
    return safe(  # errors from outside are in it: one line, no control characters, no secret
        f"{time.strftime('%H:%M:%S', time.localtime(st.at))} "
        f"src {src.kind} {state} {src.frames_per_s:,.0f} fr/s {src.trades_per_s:,.0f} tr/s "
        f"reconnects {src.reconnects}{gap} | "
        f"bus {bus.kind}{link} q {fmt_queue(bus.queue_depth, bus.queue_capacity, bus.queue_unit)}"
        f"{backlog} | "
        f"analyzer {an.trades_per_s:,.0f} tr/s {an.symbols} sym total {an.trades:,} "
        f"late {an.late:,} future {an.future_time:,} too_old {an.too_old:,}{behind} | "
        f"latency p50 {fmt_ms(an.latency_p50)} p99 {fmt_ms(an.latency_p99)} | "
        f"drops {drops}{sink}" + (f" | stage restarts {restarts}" if restarts else "")
    )


async def run_headless(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Runs until SIGINT/SIGTERM (or the end of a replay), drains, and returns the exit code.

    A second signal while draining abandons what is left, and so does `stop_timeout`: the
    process then says what it was waiting for and exits with `exits.LOST` at once."""
    interval = settings.headless.status_interval
    pipeline = build_pipeline(settings, live_interval=None)  # no screen: no live snapshots
    stop = asyncio.Event()
    abandon = asyncio.Event()

    def on_signal() -> None:
        (abandon if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Also replaces an inherited SIG_IGN (a shell starts `cmd &` with SIGINT ignored).
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    # `kill -USR1 <pid>` writes every thread's stack to stderr: what a stuck service waits on.
    with contextlib.suppress(AttributeError, RuntimeError, ValueError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)

    await pipeline.start()
    print(
        f"stockup-tui headless: {pipeline.source.stats.kind} -> {pipeline.bus.stats.kind} "
        f"-> analyzer ({', '.join(settings.windows)}); Ctrl+C to stop",
        file=out,
        flush=True,
    )

    async def report() -> None:
        while True:
            await asyncio.sleep(interval)
            print(status_line(pipeline.fresh_stats()), file=out, flush=True)

    reporter = asyncio.create_task(report())
    # A process with a source ends with a finite one (a replay); the others run until stopped.
    has_source = settings.role.has_feed
    source_done = asyncio.create_task(
        pipeline.wait_source_done() if has_source else asyncio.Event().wait()
    )
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({source_done, stopped}, return_when=asyncio.FIRST_COMPLETED)
    reporter.cancel()
    source_done.cancel()
    stopped.cancel()
    stop.set()  # from here a signal abandons
    await _drain(pipeline, abandon, settings.stop_timeout, out)
    print(status_line(pipeline.stats, final=True), file=out, flush=True)
    if pipeline.lost_at_exit:
        print(
            f"stockup-tui: stopped, but lost at exit: {describe_losses(pipeline.lost_at_exit)}",
            file=sys.stderr,
            flush=True,
        )
        return exits.LOST
    print("stopped cleanly", file=out, flush=True)
    return exits.OK


async def _drain(pipeline: Pipeline, abandon: asyncio.Event, bound: float, out: TextIO) -> None:
    """`pipeline.stop()`, saying what it waits for once a second after the first; on a second
    signal or after `bound` seconds, says what was left and ends the process (exits.LOST):
    threads stuck on a dead broker must not keep it alive."""
    stopping = asyncio.create_task(pipeline.stop())
    abandoned = asyncio.create_task(abandon.wait())
    started = time.monotonic()
    while True:
        left = bound - (time.monotonic() - started)
        done, _ = await asyncio.wait(
            {stopping, abandoned}, timeout=min(1.0, max(0.0, left)), return_when="FIRST_COMPLETED"
        )
        if stopping in done:
            abandoned.cancel()
            stopping.result()
            return
        waited = time.monotonic() - started
        if abandoned in done or waited >= bound:
            why = "abandoned" if abandoned in done else f"gave up after {bound:g}s"
            print(
                safe(f"stockup-tui: {why} while {pipeline.stop_progress()}: that data is lost"),
                file=sys.stderr,
                flush=True,
            )
            out.flush()
            os._exit(exits.LOST)
        print(
            safe(f"stopping: {pipeline.stop_progress()} ({waited:.0f}s; Ctrl+C again to abandon)"),
            file=out,
            flush=True,
        )
