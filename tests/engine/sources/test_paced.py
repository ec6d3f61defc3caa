"""Paced reads over a real socket: fewer reads, receive stamps never later than the data can
have arrived, the library's flow control and a close still work while the socket rests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import pairwise

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from stockup_tui.engine.sources.finnhub import FinnhubClient
from stockup_tui.engine.sources.paced import PacedConnection
from tests.helpers import wait_until

Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def feed(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@asynccontextmanager
async def paced(handler: Handler, rest: float | None, **kw: int) -> AsyncIterator[PacedConnection]:
    """A connection to a feed running `handler`, resting `rest` seconds after each read."""
    async with feed(handler) as url, connect(url, create_connection=PacedConnection, **kw) as ws:
        assert isinstance(ws, PacedConnection)
        if rest is not None:
            ws.pacer = lambda: rest
        yield ws


def sends_stamped(n: int, every: float) -> Callable[[ServerConnection], Awaitable[None]]:
    """A feed sending `n` frames `every` seconds apart, each holding its send time."""

    async def handler(ws: ServerConnection) -> None:
        for _ in range(n):
            await ws.send(repr(time.time()))
            await asyncio.sleep(every)  # the feed's pace, not a synchronisation
        await ws.wait_closed()

    return handler


async def test_a_paced_socket_is_read_in_fewer_reads_and_stamped_no_later_than_the_send() -> None:
    n = 60
    got: list[tuple[float, float]] = []  # (sent, stamp)
    async with paced(sends_stamped(n, 0.005), 0.05) as ws:
        async for frame in ws:
            assert isinstance(frame, str)
            got.append((float(frame), ws.read_at))
            if len(got) == n:
                break
        rests = ws.rests
    sent = [s for s, _ in got]
    stamps = [r for _, r in got]
    assert sent == sorted(sent)  # every frame, in order
    assert stamps == sorted(stamps)
    # The frames that waited in the kernel carry the time the rest began, not the read's:
    # never later than their send (a few ms for a frame in flight when the rest began).
    assert max(r - s for s, r in got) < 0.005
    reads = len(set(stamps))
    assert rests >= 3 and reads <= n // 2, (rests, reads)


async def test_without_a_pacer_every_read_is_stamped_when_it_comes() -> None:
    got: list[tuple[float, float]] = []
    async with paced(sends_stamped(20, 0.005), None) as ws:
        async for frame in ws:
            assert isinstance(frame, str)
            got.append((float(frame), ws.read_at))
            if len(got) == 20:
                break
        assert ws.rests == 0
    assert all(r >= s for s, r in got)  # read after it was sent (same clock)
    assert all(a < b for (_, a), (_, b) in pairwise(got))  # one read per frame at this pace


async def test_after_a_rest_in_which_nothing_came_the_next_frame_is_stamped_when_read() -> None:
    async def two_apart(ws: ServerConnection) -> None:
        await ws.recv()  # the client's pacer is set
        await ws.send(repr(time.time()))
        await asyncio.sleep(0.3)  # a quiet feed: the rest after the first read ends unused
        await ws.send(repr(time.time()))
        await ws.wait_closed()

    got: list[tuple[float, float]] = []
    async with paced(two_apart, 0.05) as ws:
        await ws.send("go")
        async for frame in ws:
            assert isinstance(frame, str)
            got.append((float(frame), ws.read_at))
            if len(got) == 2:
                break
        assert ws.rests >= 1
    (_, stamp1), (sent2, stamp2) = got
    assert stamp2 >= sent2  # not the rest's start, 0.25 s before it was even sent
    assert stamp2 - stamp1 > 0.25


async def test_the_librarys_flow_control_still_holds_and_frees_a_paced_socket() -> None:
    """A reader slower than the feed: the library pauses the socket at max_queue and resumes
    it once the frames are taken; a rest ending meanwhile does not resume it early."""
    n = 200
    pad = "x" * 16_384  # a few frames a read, so that the queue fills in steps

    async def flood(ws: ServerConnection) -> None:
        for i in range(n):
            await ws.send(f"{i} {pad}")
        await ws.wait_closed()

    got: list[int] = []
    held: list[bool] = []  # the socket not read while the reader dawdles
    async with paced(flood, 0.01, max_queue=4) as ws:
        async for frame in ws:
            got.append(int(frame.split()[0]))
            if len(got) % 40 == 0:
                await asyncio.sleep(0.05)  # a slow reader now and then: rests end meanwhile
                held.append(not ws.transport.is_reading())
            if len(got) == n:
                break
    assert got == list(range(n))
    # Held at every pause but the last (by then the whole feed was read).
    assert len(held) == n // 40 and all(held[:-1]), held


async def test_a_close_during_a_rest_ends_the_stream_once_the_rest_is_over() -> None:
    async def one_then_close(ws: ServerConnection) -> None:
        await ws.send("only")
        await ws.close()

    async with paced(one_then_close, 0.2) as ws:
        frames = []
        started = time.monotonic()
        try:
            async for frame in ws:
                frames.append(frame)
        except ConnectionClosed:
            pass
        assert frames == ["only"]
        assert time.monotonic() - started < 5
        assert ws.transport.is_closing()


async def test_the_client_reads_at_the_pace_its_pacer_gives() -> None:
    asked: list[float] = []

    def pacer() -> float:
        asked.append(time.monotonic())
        return 0.03

    frames: list[str | bytes] = []

    async def on_frame(frame: str | bytes, recv: float) -> None:
        frames.append(frame)

    async with feed(sends_stamped(400, 0.005)) as url:
        client = FinnhubClient(url, ["AAPL"], kind="simulator")
        task = asyncio.get_running_loop().create_task(client.run(on_frame, pacer))
        try:
            await wait_until(lambda: len(frames) >= 100, what="100 frames")
        finally:
            await client.stop()
            await asyncio.wait_for(task, 5)
    # Asked once per read; reads every ~30 ms of a frame every 5 ms: several frames a read.
    assert asked and len(asked) <= len(frames) // 2, (len(asked), len(frames))
