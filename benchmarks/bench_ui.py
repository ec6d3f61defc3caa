"""What the screen costs: CPU of `stockup-tui` (dashboard) minus `stockup-tui --headless` at the
same load, and how fast a key press shows on screen. Runs both in a real terminal (tmux).

    python benchmarks/bench_ui.py --symbols 50 --rate 10000 --seconds 20

Key latency is measured as a person sees it: send a key with tmux, poll the terminal until the
effect is drawn (the event log pane appears / disappears). It includes tmux's own delay, so it
is an upper bound. `--key w` switches the window shown; `--key l` toggles the event log pane
(a relayout of the whole screen, the heaviest key).
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

SESSION = "stockup-bench"
# key -> text whose presence on screen flips with each press
KEYS = {
    "w": ("w", "window 5m"),  # switch the window: subtitle, table and detail change
    "l": ("l", "Events"),  # toggle the event log pane: a relayout of the whole screen
}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


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
        f"env {env} {' '.join(cmd)}",
    )  # fmt: skip
    proc = pane_process()
    time.sleep(args.warmup)  # let the windows and the screen fill before measuring
    c0 = proc.cpu_times()
    t0 = time.monotonic()
    time.sleep(args.seconds)
    c1 = proc.cpu_times()
    cpu = (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0) * 100
    latencies: list[float] = []
    if not headless:
        key, marker = KEYS[args.key]
        for _ in range(args.presses):
            before = marker in tmux("capture-pane", "-t", SESSION, "-p")
            start = time.perf_counter()
            tmux("send-keys", "-t", SESSION, key)
            while (marker in tmux("capture-pane", "-t", SESSION, "-p")) == before:
                if time.perf_counter() - start > 5:
                    raise RuntimeError("key press had no visible effect within 5 s")
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.3)
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
    args = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("tmux is needed (apt-get install tmux)")
    sim = None
    if args.external_sim:
        sim = subprocess.Popen(
            [sys.executable, "-m", "stockup_tui", "simulate", "--port", str(args.sim_port),
             "--rate", str(args.rate), "--symbol-limit", str(args.symbols + 10),
             "--log-level", "WARNING"],
        )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as home:
            os.makedirs(f"{home}/state", exist_ok=True)
            headless_cpu, _ = run(args, headless=True, config_home=home)
            app_cpu, latencies = run(args, headless=False, config_home=home)
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait(10)
    print(f"load                {args.symbols} symbols, {args.rate:,.0f} trades/s")
    print(f"cpu --headless      {headless_cpu:6.1f}% of a core")
    print(f"cpu dashboard       {app_cpu:6.1f}% of a core")
    print(f"screen costs        {app_cpu - headless_cpu:6.1f}% of a core beyond headless")
    if latencies:
        ordered = sorted(latencies)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(
            f"key {args.key!r} -> visible  median {statistics.median(latencies):.0f} ms, "
            f"p90 {p90:.0f} ms, max {max(latencies):.0f} ms over {len(latencies)} presses "
            "(tmux polling included)"
        )


if __name__ == "__main__":
    main()
