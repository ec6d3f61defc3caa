"""Throughput of the per-trade hot paths: FrameParser.parse (+ take) and the bus codec.

Frames are pre-built with orjson: 100 trades per frame over 50 symbols, about 2% of them
resends of a recent trade (some in the same frame, some in an earlier one), as Finnhub does.
`take` runs every `--take-every` frames (default 20, as the pipeline flushes at 2,000 trades).
The dedup clock is simulated as if the feed delivered `--feed-rate` trades/s, so the dedup sets
hold what they would hold in steady state at that rate (between 1 and 2 x rate x horizon keys)
rather than whatever the benchmark's own speed implies.

Figures are input trades per second: the best round by wall clock and by process CPU time (the
latter is less disturbed by other processes on a shared machine), and the median wall round.

    python benchmarks/bench_parse.py [--frames 2000] [--rounds 7] [--feed-rate 50000]
        [--take-every 20]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from collections import deque
from collections.abc import Callable

import orjson

from stockup_tui.engine.codec import decode_batch, encode_batch
from stockup_tui.engine.drops import Drops
from stockup_tui.engine.model import SymbolBatch
from stockup_tui.engine.sources.dedup import DuplicateFilter
from stockup_tui.engine.sources.parser import FrameParser

TRADES_PER_FRAME = 100
SYMBOLS = 50
DUP_RATE = 0.02
CONDITIONS = [["1", "12"], ["1"], ["12", "37"], None]


def build_frames(n_frames: int, seed: int = 7) -> list[str]:
    """Finnhub-like trade frames as the websocket hands them over (str)."""
    rng = random.Random(seed)
    symbols = [f"SYM{i:02d}" for i in range(SYMBOLS)]
    prices = {s: rng.uniform(10, 500) for s in symbols}
    t = 1_764_085_243_123
    recent: list[dict] = []
    frames = []
    for _ in range(n_frames):
        data = []
        for _ in range(TRADES_PER_FRAME):
            if recent and rng.random() < DUP_RATE:
                data.append(rng.choice(recent[-150:]))  # a resend
                continue
            t += rng.randint(0, 3)
            s = rng.choice(symbols)
            prices[s] *= 1 + rng.gauss(0, 0.0005)
            trade = {
                "c": rng.choice(CONDITIONS),
                "p": round(prices[s], 2),
                "s": s,
                "t": t,
                "v": rng.choice([1, 5, 100, 200, 0.5]),
            }
            data.append(trade)
            recent.append(trade)
        frames.append(orjson.dumps({"data": data, "type": "trade"}).decode())
    return frames


def build_messages(n_messages: int, size: int, seed: int = 11) -> list[bytes]:
    """Encoded bus messages of `size` trades each."""
    rng = random.Random(seed)
    out = []
    for i in range(n_messages):
        t0 = 1_764_085_243_123 + i * size
        batch = SymbolBatch(
            symbol=f"SYM{i % SYMBOLS:02d}",
            t=[t0 + k for k in range(size)],
            p=[round(rng.uniform(10, 500), 2) for _ in range(size)],
            v=[float(rng.choice([1, 5, 100, 200])) for _ in range(size)],
            c=[rng.choice(CONDITIONS) for _ in range(size)],
            recv=[(1_764_085_244.5 + i, size)],
        )
        out.append(encode_batch(batch))
    return out


def measure(label: str, trades: int, rounds: int, run: Callable[[], object]) -> float:
    """Run `run` `rounds` times; print and return the best wall-clock trades/s."""
    wall = []
    cpu = []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    best = trades / min(wall)
    print(
        f"{label:<38} best {best:>10,.0f}/s   cpu-best {trades / min(cpu):>10,.0f}/s"
        f"   median {trades / statistics.median(wall):>10,.0f}/s"
    )
    return best


def parse_all(
    frames: list[str], dedup: bool, feed_rate: float = 50_000.0, take_every: int = 20
) -> FrameParser:
    """Parse every frame, collecting batches like a flush loop would."""
    step = TRADES_PER_FRAME / feed_rate
    recv = 1_764_085_244.0
    parser = FrameParser(Drops(), DuplicateFilter(now=recv) if dedup else None)
    for i, frame in enumerate(frames):
        parser.parse(frame, recv + i * step)
        if i % take_every == 0:
            parser.take()
    parser.take()
    return parser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--feed-rate", type=float, default=50_000.0, help="simulated trades/s")
    ap.add_argument("--take-every", type=int, default=20, help="frames between take() calls")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the drop counter logs each duplicate batch

    frames = build_frames(args.frames)
    n = args.frames * TRADES_PER_FRAME
    check = parse_all(frames, True, args.feed_rate, args.take_every)
    print(
        f"{args.frames} frames x {TRADES_PER_FRAME} trades, {SYMBOLS} symbols, simulated feed "
        f"{args.feed_rate:,.0f} trades/s: {check.trades} kept, drops {check.drops.snapshot()}, "
        f"dedup keys at end {check.dedup.size if check.dedup else 0:,}"
    )
    measure(
        "orjson.loads only (reference)",
        n,
        args.rounds,
        lambda: deque(map(orjson.loads, frames), 0),
    )
    measure(
        "parse+take, dedup on",
        n,
        args.rounds,
        lambda: parse_all(frames, True, args.feed_rate, args.take_every),
    )
    measure(
        "parse+take, dedup off",
        n,
        args.rounds,
        lambda: parse_all(frames, False, args.feed_rate, args.take_every),
    )

    for size, count in ((500, 400), (20, 10_000)):
        msgs = build_messages(count, size)
        batches = [decode_batch(m) for m in msgs]
        measure(
            f"decode_batch, {size}-trade messages",
            size * count,
            args.rounds,
            lambda msgs=msgs: deque(map(decode_batch, msgs), 0),
        )
        measure(
            f"encode_batch, {size}-trade messages",
            size * count,
            args.rounds,
            lambda batches=batches: deque(map(encode_batch, batches), 0),
        )


if __name__ == "__main__":
    main()
