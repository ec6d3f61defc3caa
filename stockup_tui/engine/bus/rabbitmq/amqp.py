"""pika on the pipeline's asyncio loop: awaitable connections, channels and RPCs, the topology,
errors worded for the user, and `Link`, one AMQP connection that keeps itself up.

pika's `AsyncioConnection` runs on the loop it is given (`custom_ioloop`), so publishing and
consuming never block the loop and need no thread. Its callbacks are turned into futures here;
every wait also ends when the connection is lost, so nothing hangs on a dead socket.

Longer than most modules on purpose: it is all of pika's asyncio face (futures for callbacks,
the topology, the self-healing `Link`) plus the wording of the many shapes pika's errors come in
(exceptions wrapped in exceptions, close frames, socket errors), which only this code raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pika
from pika import exceptions as px
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel as PikaChannel

from stockup_tui.config import ConfigError, RabbitMQConfig
from stockup_tui.engine.resilience import Backoff, ErrorLatch

log = logging.getLogger("stockup_tui.engine.bus.rabbitmq.bus")

BACKOFF_MIN = 0.2  # first retry after a loss (seconds), doubled up to BACKOFF_MAX, jittered
BACKOFF_MAX = 5.0
BACKOFF_JITTER = (0.8, 1.2)  # each wait times a factor drawn from this range
CONNECT_TIMEOUT = 10.0  # TCP + TLS + AMQP handshake
RPC_TIMEOUT = 15.0  # any declare/qos/consume answer
ROUTE_ALL = "#"  # the app's queue binds every routing key (= symbol) of the topic exchange


class LinkLost(Exception):
    """A link gave up its connection on purpose (nack, unroutable message, consumer cancelled)."""


def quiet_pika() -> None:
    """pika logs five ERROR lines (with stack details) per failed connection attempt; our own
    log says what matters once per state change. Left alone when DEBUG logging is on."""
    pika_log = logging.getLogger("pika")
    if pika_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        pika_log.setLevel(logging.CRITICAL)


def connection_parameters(cfg: RabbitMQConfig, name: str) -> pika.ConnectionParameters:
    """pika parameters from the `[rabbitmq]` section; raises ConfigError on a bad TLS setup."""
    password = cfg.password.get_secret_value() if cfg.password is not None else ""
    ssl_options = None
    if cfg.tls:
        try:
            context = ssl.create_default_context(
                cafile=str(cfg.tls_cafile) if cfg.tls_cafile else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"rabbitmq.tls_cafile: cannot load {cfg.tls_cafile}: {exc}") from None
        ssl_options = pika.SSLOptions(context, server_hostname=cfg.host)
    heartbeat = 0 if cfg.heartbeat <= 0 else max(1, round(cfg.heartbeat))
    return pika.ConnectionParameters(
        host=cfg.host,
        port=cfg.port,
        virtual_host=cfg.vhost,
        credentials=pika.PlainCredentials(cfg.username, password, erase_on_connect=False),
        heartbeat=heartbeat,
        connection_attempts=1,
        retry_delay=0,
        socket_timeout=CONNECT_TIMEOUT,
        stack_timeout=CONNECT_TIMEOUT + 5,
        ssl_options=ssl_options,
        client_properties={"connection_name": name, "product": "stockup-tui"},
    )


def describe_error(exc: BaseException | None, cfg: RabbitMQConfig) -> str:
    """One line for the user: what went wrong and which setting to look at. Never the password."""
    where = f"{cfg.host}:{cfg.port}"
    user, vhost = cfg.username, cfg.vhost
    if isinstance(exc, px.ProbableAuthenticationError | px.AuthenticationError):
        hint = (
            "no password is set: STOCKUP_RABBITMQ__PASSWORD"
            if cfg.password is None
            else "check rabbitmq.username / STOCKUP_RABBITMQ__PASSWORD"
        )
        text = f"RabbitMQ refused the login for user '{user}' on vhost '{vhost}' ({hint})"
    elif isinstance(exc, px.ProbableAccessDeniedError):
        text = (
            f"RabbitMQ denied user '{user}' access to vhost '{vhost}' (does the vhost exist and "
            "may the user use it? check rabbitmq.vhost)"
        )
    elif isinstance(exc, px.ChannelClosedByBroker | px.ConnectionClosedByBroker):
        code, reply = exc.reply_code, exc.reply_text
        if code == 403:
            text = (
                f"RabbitMQ refused an operation for user '{user}' on vhost '{vhost}': {reply} "
                "(grant the user configure/write/read permissions on the vhost)"
            )
        elif code == 320:
            text = f"RabbitMQ at {where} closed the connection (server shutting down?): {reply}"
        else:
            text = f"RabbitMQ at {where} closed the channel ({code}): {reply}"
    elif isinstance(exc, px.IncompatibleProtocolError):
        text = (
            f"RabbitMQ at {where} did not answer as an AMQP 0-9-1 server (wrong port, or TLS "
            "needed: rabbitmq.tls?)"
        )
    elif isinstance(exc, px.AMQPHeartbeatTimeout):
        text = f"lost RabbitMQ at {where}: no heartbeat"
    elif isinstance(exc, px.StreamLostError):
        text = f"lost the connection to RabbitMQ at {where}: {_inner(_root(exc))}"
    elif isinstance(exc, px.AMQPConnectionError):
        root = _root(exc)
        if isinstance(root, ConnectionRefusedError):
            text = (
                f"cannot reach RabbitMQ at {where}: connection refused (is it running? check "
                "rabbitmq.host / rabbitmq.port)"
            )
        elif isinstance(root, socket.gaierror):
            text = f"cannot resolve the RabbitMQ host '{cfg.host}' (check rabbitmq.host): {root}"
        elif isinstance(root, ssl.SSLError):
            text = f"TLS handshake with RabbitMQ at {where} failed: {root}"
        elif isinstance(root, TimeoutError | socket.timeout):
            text = f"cannot reach RabbitMQ at {where}: timed out"
        elif isinstance(root, OSError):
            text = f"cannot reach RabbitMQ at {where}: {root.strerror or root}"
        else:
            text = f"cannot reach RabbitMQ at {where}: {_inner(root)}"
    elif isinstance(exc, TimeoutError):
        text = f"RabbitMQ at {where} did not answer in time"
    elif exc is None:
        text = f"lost the connection to RabbitMQ at {where}"
    else:
        text = f"RabbitMQ at {where}: {exc}"
    return _scrub(text, cfg)


def _root(exc: BaseException) -> BaseException:
    """The innermost cause inside pika's nested connection-workflow errors."""
    for _ in range(10):
        nested = getattr(exc, "exceptions", None)
        inner = getattr(exc, "exception", None)
        if nested:
            exc = nested[-1]
        elif isinstance(inner, BaseException):
            exc = inner
        elif exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            break
    return exc


def _inner(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return text[:200] or type(exc).__name__


def _scrub(text: str, cfg: RabbitMQConfig) -> str:
    if cfg.password is not None:
        secret = cfg.password.get_secret_value()
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


# -- awaitable pika ------------------------------------------------------------------------


async def open_connection(
    params: pika.ConnectionParameters, on_lost: Callable[[BaseException | None], None]
) -> AsyncioConnection:
    """Opens a connection on the running loop; `on_lost` is called once if it closes later."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[AsyncioConnection] = loop.create_future()

    def ok(conn: AsyncioConnection) -> None:
        if not opened.done():
            opened.set_result(conn)

    def failed(_conn: AsyncioConnection, exc: BaseException | str) -> None:
        if not opened.done():
            opened.set_exception(
                exc if isinstance(exc, BaseException) else px.AMQPConnectionError(exc)
            )

    def closed(_conn: AsyncioConnection, exc: BaseException | None) -> None:
        if not opened.done():
            opened.set_exception(exc or px.AMQPConnectionError("closed while opening"))
        else:
            on_lost(exc)

    conn = AsyncioConnection(
        params,
        on_open_callback=ok,
        on_open_error_callback=failed,
        on_close_callback=closed,
        custom_ioloop=loop,
    )
    try:
        return await asyncio.wait_for(asyncio.shield(opened), CONNECT_TIMEOUT + 10)
    except BaseException:
        close_quietly(conn)
        raise


def close_quietly(conn: AsyncioConnection | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(Exception):
        if not (conn.is_closing or conn.is_closed):
            conn.close()


class Channel:
    """A pika channel whose RPCs can be awaited; an RPC fails when the channel or link dies."""

    def __init__(self, ch: PikaChannel, lost: asyncio.Future[Any]) -> None:
        self.ch = ch
        self._lost = lost
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )
        ch.add_on_close_callback(self._on_close)

    @classmethod
    async def open(cls, conn: AsyncioConnection, lost: asyncio.Future[Any]) -> Channel:
        fut: asyncio.Future[PikaChannel] = asyncio.get_running_loop().create_future()
        conn.channel(on_open_callback=partial(_resolve, fut))
        ch = await _first(fut, lost, "channel.open")
        return cls(ch, lost)

    def _on_close(self, _ch: PikaChannel, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    @property
    def is_open(self) -> bool:
        return bool(self.ch.is_open)  # pika is untyped

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls a pika channel method that takes `callback=` and awaits its reply frame."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        method(*args, callback=partial(_resolve, fut), **kwargs)
        return await _first(fut, self._lost, getattr(method, "__name__", "rpc"), self.closed)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.ch.is_open:
                self.ch.close()


async def _first(
    fut: asyncio.Future[Any],
    lost: asyncio.Future[Any],
    what: str,
    closed: asyncio.Future[Any] | None = None,
) -> Any:
    """`fut`'s result, or the reason the channel/connection died first; times out."""
    waits = {fut, lost} | ({closed} if closed is not None else set())
    await asyncio.wait(waits, timeout=RPC_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if fut.done():
        return fut.result()
    for end in (closed, lost):
        if end is not None and end.done():
            reason = end.result()
            raise reason if isinstance(reason, BaseException) else px.AMQPConnectionError(what)
    raise TimeoutError(f"RabbitMQ did not answer {what} within {RPC_TIMEOUT:.0f}s")


# -- topology -------------------------------------------------------------------------------


def queue_arguments(cfg: RabbitMQConfig) -> dict[str, Any] | None:
    if cfg.queue_type == "stream":
        return {"x-queue-type": "stream", "x-max-age": f"{max(1, round(cfg.max_age))}s"}
    if cfg.queue_type == "quorum":
        return {"x-queue-type": "quorum"}
    return None  # classic: the server's default type


async def declare_topology(
    conn: AsyncioConnection, cfg: RabbitMQConfig, lost: asyncio.Future[Any]
) -> None:
    """Declares (when missing) the topic exchange, the queue bound to every routing key, and the
    dead-letter exchange and queue. Idempotent; both publisher and consumer call it, so messages
    are kept even when the query process starts before any analyzer."""
    ch = await Channel.open(conn, lost)
    try:
        for name, kind in ((cfg.exchange, "topic"), (cfg.dead_letter_exchange, "fanout")):
            try:
                await ch.call(
                    ch.ch.exchange_declare, exchange=name, exchange_type=kind, durable=True
                )
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code == 406:
                    raise LinkLost(
                        f"exchange '{name}' exists with other settings than a durable {kind} "
                        f"exchange ({exc.reply_text}); delete it or choose another name"
                    ) from None
                raise
        ch = await _declare_queue(conn, ch, cfg.queue, queue_arguments(cfg), lost, main=cfg)
        await ch.call(
            ch.ch.queue_bind, queue=cfg.queue, exchange=cfg.exchange, routing_key=ROUTE_ALL
        )
        ch = await _declare_queue(conn, ch, cfg.dead_letter_queue, None, lost, main=None)
        await ch.call(
            ch.ch.queue_bind,
            queue=cfg.dead_letter_queue,
            exchange=cfg.dead_letter_exchange,
            routing_key="",
        )
    finally:
        ch.close()


_warned_mismatch: set[str] = set()


async def _declare_queue(
    conn: AsyncioConnection,
    ch: Channel,
    name: str,
    arguments: dict[str, Any] | None,
    lost: asyncio.Future[Any],
    main: RabbitMQConfig | None,
) -> Channel:
    """Declares a durable queue; one that exists with other arguments is used as it is (a
    warning), unless its type differs from the configured one (an error: a classic queue cannot
    replay). Returns the channel to go on with (a 406 closes the one it happened on)."""
    try:
        await ch.call(ch.ch.queue_declare, queue=name, durable=True, arguments=arguments)
        return ch
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        reply = exc.reply_text
    if main is not None and "x-queue-type" in reply:
        raise LinkLost(
            f"queue '{name}' exists with another type than rabbitmq.queue_type = "
            f"'{main.queue_type}' ({reply}); set rabbitmq.queue_type to its type or use another "
            "rabbitmq.queue"
        )
    if name not in _warned_mismatch:
        _warned_mismatch.add(name)
        log.warning("queue '%s' exists with other arguments; using it as it is (%s)", name, reply)
    ch = await Channel.open(conn, lost)
    await ch.call(ch.ch.queue_declare, queue=name, passive=True)
    return ch


# -- a connection that keeps itself up ------------------------------------------------------


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    """`fut`'s result, unless it has one already (a reply after the wait gave up)."""
    if not fut.done():
        fut.set_result(value)


class Link:
    """One AMQP connection that reconnects by itself: connect, `_setup`, serve until lost,
    `_teardown`, back off (jittered, doubling up to BACKOFF_MAX), again. Errors are worded by
    `describe_error` and logged once per change of state, never once per attempt."""

    def __init__(self, name: str, cfg: RabbitMQConfig, params: pika.ConnectionParameters) -> None:
        self.name = name
        self.cfg = cfg
        self.params = params
        self.conn: AsyncioConnection | None = None
        self.connected = False
        self.connections = 0  # successful opens
        self.down_since: float | None = None
        self._errors = ErrorLatch(
            log,
            "RabbitMQ %(name)s: %(error)s; retrying by itself (backoff up to %(cap).0fs)",
            name=name,
            cap=BACKOFF_MAX,
        )
        self._lost: asyncio.Future[BaseException | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.first_attempt = asyncio.Event()

    # subclasses
    async def _setup(self, conn: AsyncioConnection, lost: asyncio.Future[Any]) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"rabbitmq:{self.name}"
        )

    def fail(self, exc: BaseException | None) -> None:
        """Drops the connection (it is re-opened with backoff): for errors found in callbacks."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(exc)

    @property
    def last_error(self) -> str | None:
        """Why the link is down; None while it is up."""
        return self._errors.error

    @property
    def stopped(self) -> bool:
        return self._stopping

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        self.fail(None)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                log.exception("RabbitMQ %s did not stop cleanly", self.name)
        self.connected = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX, jitter=BACKOFF_JITTER)
        while not self._stopping:
            lost: asyncio.Future[BaseException | None] = loop.create_future()
            self._lost = lost
            conn: AsyncioConnection | None = None
            reason: BaseException | None
            try:
                conn = await open_connection(self.params, partial(_resolve, lost))
                self.conn = conn
                await self._setup(conn, lost)
                if not lost.done():
                    self._up()
                    backoff.reset()
                reason = await lost
            except asyncio.CancelledError:
                self._down_quietly(conn)
                raise
            except Exception as exc:
                reason = exc
            self._down_quietly(conn)
            if self._stopping:
                break
            self._down(reason, backoff.delay)
            self.first_attempt.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff.next())
        self.first_attempt.set()

    def _down_quietly(self, conn: AsyncioConnection | None) -> None:
        self.connected = False
        self.conn = None
        try:
            self._teardown()
        finally:
            close_quietly(conn)

    def _up(self) -> None:
        self.connected = True
        self.connections += 1
        if self.down_since is not None:
            log.info(
                "RabbitMQ %s: connected again to %s:%s after %.1fs",
                self.name,
                self.cfg.host,
                self.cfg.port,
                time.monotonic() - self.down_since,
            )
        else:
            log.info(
                "RabbitMQ %s: connected to %s:%s vhost '%s' (queue '%s', %s)",
                self.name,
                self.cfg.host,
                self.cfg.port,
                self.cfg.vhost,
                self.cfg.queue,
                self.cfg.queue_type,
            )
        self.down_since = None
        self._errors.clear()
        self.first_attempt.set()

    def _down(self, reason: BaseException | None, delay: float) -> None:
        text = str(reason) if isinstance(reason, LinkLost) else describe_error(reason, self.cfg)
        if self.down_since is None:
            self.down_since = time.monotonic()
        log.debug("RabbitMQ %s: down: %r", self.name, reason)
        if not self._errors.set(text):
            log.debug("RabbitMQ %s: still down (%s); next try in %.1fs", self.name, text, delay)
