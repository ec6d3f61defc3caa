"""What the screen costs: CPU of `stockup-tui` (dashboard) minus `stockup-tui --headless` at the
same load, and how fast a key press shows on screen. Runs both in a real terminal (tmux).

    python benchmarks/bench_ui.py --symbols 50 --rate 10000 --seconds 20

Key latency is measured as a person sees it: send a key to tmux, poll the terminal's contents
until the effect is drawn (the subtitle says "window 5m" / "window 1m"; the event log pane
appears / disappears). It includes tmux's own delay, so it is an upper bound; the script also
times the same round trip against `cat` (the terminal echoes the key), tmux's floor.

Polling goes through one tmux control-mode client (`--poll control`, the default): a poll is a
command on an open pipe, about 0.05 ms, made every 0.5 ms. `--poll spawn` starts a `tmux
capture-pane` process per poll instead (2-3 ms each, back to back): that loop keeps a whole
core busy, which on a small machine competes with the app being measured.

`--key w` switches the window shown; `--key l` toggles the event log pane (a relayout of the
whole screen, the heaviest key).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
from bench_pipeline import ROOT

SESSION = "stockup-bench"
# key -> text whose presence on screen flips with each press
KEYS = {
    "w": ("w", "window 5m"),  # switch the window: subtitle, table and detail change
    "l": ("l", "Events"),  # toggle the event log pane: a relayout of the whole screen
}
POLL_SLEEP = 0.0005  # between two polls of the screen with --poll control


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


class SpawnPoller:
    """A `tmux` process per command (simple; 2-3 ms and a fork per poll)."""

    sleep = 0.0

    def command(self, *args: str) -> str:
        return tmux(*args)

    def close(self) -> None:
        return None


class ControlPoller:
    """Commands through one tmux control-mode client attached to the session (`tmux -C`).

    The client is attached with `no-output` (tmux does not stream the pane's output to it) and
    `ignore-size` (it does not change the window's size). The output of each command it sends
    comes back between `%begin` and `%end` lines whose flags are 1; blocks with flags 0 (the
    attach itself, commands tmux runs on its own) and notifications are skipped.
    """

    sleep = POLL_SLEEP

    def __init__(self, session: str) -> None:
        self.proc = subprocess.Popen(
            ["tmux", "-C", "attach-session", "-t", session, "-f", "no-output,ignore-size"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._last: int | None = None  # number of the last command answered

    def command(self, *args: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(_quote(a) for a in args) + "\n")
        self.proc.stdin.flush()
        lines: list[str] | None = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the tmux control client went away")
            line = line.rstrip("\n")
            guard = line.split()
            if line.startswith("%begin") and guard[-1] == "1":
                lines = []
                number = int(guard[2])
            elif line.startswith(("%end", "%error")) and lines is not None:
                if self._last is not None and number <= self._last:  # numbers only grow
                    raise RuntimeError(f"tmux answered command {number} after {self._last}")
                self._last = number
                if line.startswith("%error"):
                    raise RuntimeError(f"tmux {' '.join(args)}: {' '.join(lines)}")
                return "\n".join(lines) + "\n"
            elif lines is not None:
                lines.append(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(5)


def _quote(arg: str) -> str:
    """A word for tmux's command parser: quoted unless it is plainly safe."""
    if arg and all(c.isalnum() or c in "-_.:/#{}" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def make_poller(kind: str) -> SpawnPoller | ControlPoller:
    return ControlPoller(SESSION) if kind == "control" else SpawnPoller()


def time_key(
    poller: SpawnPoller | ControlPoller, key: str, marker: str, timeout: float = 5.0
) -> float:
    """Milliseconds from sending `key` to the pane until `marker`'s presence on screen flips."""
    before = marker in poller.command("capture-pane", "-t", SESSION, "-p")
    start = time.perf_counter()
    poller.command("send-keys", "-t", SESSION, key)
    while (marker in poller.command("capture-pane", "-t", SESSION, "-p")) == before:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"key {key!r} had no visible effect within {timeout:g} s")
        if poller.sleep:
            time.sleep(poller.sleep)
    return (time.perf_counter() - start) * 1000


def floor(args: argparse.Namespace, presses: int = 20) -> list[float]:
    """tmux's own round trip: the same timing against `cat` (the terminal echoes each key)."""
    tmux("kill-session", "-t", SESSION) if _has_session() else None
    tmux("new-session", "-d", "-s", SESSION, "-x", str(args.width), "-y", str(args.height), "cat")
    time.sleep(0.3)
    poller = make_poller(args.poll)
    try:
        return [time_key(poller, "x", "x" * n) for n in range(1, presses + 1)]
    finally:
        poller.close()
        tmux("kill-session", "-t", SESSION)


def pane_process(timeout: float = 20.0) -> psutil.Process:
    """The program running in the tmux pane (`env` execs it, so the pane's pid is its pid)."""
    pid = int(tmux("display-message", "-p", "-t", SESSION, "#{pane_pid}").strip())
    proc = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while "stockup_tui" not in " ".join(proc.cmdline()):
        if time.monotonic() > deadline:
            raise RuntimeError("stockup-tui did not start in the tmux pane")
        time.sleep(0.05)
    return proc


def run(args: argparse.Namespace, headless: bool, config_home: str) -> tuple[float, list[float]]:
    symbols = ",".join(f"S{i:02d}" for i in range(args.symbols))
    cmd = [
        sys.executable, "-m", "stockup_tui", "--symbols", symbols, "--rate", str(args.rate),
        "--set", f"simulator.symbol_limit={args.symbols + 10}", "--set", "log.level=WARNING",
    ]  # fmt: skip
    if args.external_sim:
        cmd += ["--source", "finnhub", "--url", f"ws://127.0.0.1:{args.sim_port}"]
    if headless:
        cmd += ["--headless", "--status-interval", "5s"]
    env = f"XDG_CONFIG_HOME={config_home} XDG_STATE_HOME={config_home}/state"
    tmux("kill-session", "-t", SESSION) if _has_session() else None
    tmux(
        "new-session", "-d", "-s", SESSION, "-x", str(args.width), "-y", str(args.height),
        "-c", str(ROOT), f"env {env} {' '.join(cmd)}",
    )  # fmt: skip
    proc = pane_process()
    # Attached before the warm-up: attaching a client moves the terminal's focus, and the app
    # answers a focus change by rebuilding its footer (tens of ms), not part of any key press.
    poller = None if headless else make_poller(args.poll)
    try:
        time.sleep(args.warmup)  # let the windows and the screen fill before measuring
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        time.sleep(args.seconds)
        c1 = proc.cpu_times()
        cpu = (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100
        latencies: list[float] = []
        if poller is not None:
            key, marker = KEYS[args.key]
            for _ in range(args.presses):
                latencies.append(time_key(poller, key, marker))
                time.sleep(0.3)
    finally:
        if poller is not None:
            poller.close()
    tmux("send-keys", "-t", SESSION, "C-c" if headless else "q")
    proc.wait(30)
    return cpu, latencies


def _has_session() -> bool:
    return (
        subprocess.run(["tmux", "has-session", "-t", SESSION], capture_output=True).returncode == 0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--rate", type=float, default=10_000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=8)
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--key", choices=sorted(KEYS), default="w", help="key to time")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=50)
    ap.add_argument(
        "--external-sim",
        action="store_true",
        help="run the simulator as its own process (as a real feed is) instead of in-process",
    )
    ap.add_argument("--sim-port", type=int, default=8799)
    ap.add_argument(
        "--poll",
        choices=("control", "spawn"),
        default="control",
        help="read the screen through one tmux control client (default) or a process per poll",
    )
    args = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("tmux is needed (apt-get install tmux)")
    sim = None
    if args.external_sim:
        sim = subprocess.Popen(
            [sys.executable, "-m", "stockup_tui", "simulate", "--port", str(args.sim_port),
             "--rate", str(args.rate), "--symbol-limit", str(args.symbols + 10),
             "--log-level", "WARNING"],
            cwd=ROOT,
        )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as home:
            os.makedirs(f"{home}/state", exist_ok=True)
            headless_cpu, _ = run(args, headless=True, config_home=home)
            app_cpu, latencies = run(args, headless=False, config_home=home)
            tmux_floor = floor(args)
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
    print(f"load                {args.symbols} symbols, {args.rate:,.0f} trades/s")
    print(f"cpu --headless      {headless_cpu:6.1f}% of a core")
    print(f"cpu dashboard       {app_cpu:6.1f}% of a core")
    print(f"screen costs        {app_cpu - headless_cpu:6.1f}% of a core beyond headless")
    if latencies:
        print(f"key {args.key!r} -> visible  {_summary(latencies)} (--poll {args.poll})")
        print(f"tmux floor (cat)    {_summary(tmux_floor, 1)}")
        print(f"load average        {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")


def _summary(values: list[float], digits: int = 0) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"median {statistics.median(values):.{digits}f} ms, p90 {p90:.{digits}f} ms, "
        f"max {max(values):.{digits}f} ms over {len(values)} presses"
    )


if __name__ == "__main__":
    main()
