"""Typed configuration with layered sources and provenance.

Precedence, lowest to highest: built-in defaults < TOML file < environment < command-line flags.
Every value remembers where it came from so `stockup-tui config` can show it; secrets are masked
whenever the configuration is shown. Validation errors name the dotted key that is wrong.

Environment variables: ``STOCKUP_<SECTION>__<KEY>`` (e.g. ``STOCKUP_BUS__KIND=memory``), top-level
keys as ``STOCKUP_<KEY>`` (e.g. ``STOCKUP_SYMBOLS=AAPL,MSFT``); ``FINNHUB_TOKEN`` sets
``source.token``.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

import platformdirs
import tomlkit
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from stockup_tui.alerts import parse_alert
from stockup_tui.untrusted import SECRET_PARAMS

APP_NAME = "stockup-tui"
ENV_PREFIX = "STOCKUP_"
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.:_\-/^=]{0,49}$")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


class ConfigError(Exception):
    """A configuration problem, worded for the user (names the key)."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"2s"``, ``"1m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '2s' or '1m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    raise ValueError(f"expected a duration such as '500ms', '2s', '1m' (got {value!r})")


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
StrList = Annotated[list[str], BeforeValidator(_split_list)]


def normalize_symbol(raw: str) -> str:
    """Upper-cases and checks one symbol; raises ValueError with a message for the user."""
    sym = raw.strip().upper()
    if not sym:
        raise ValueError("empty symbol")
    if not SYMBOL_RE.match(sym):
        raise ValueError(
            f"{raw!r} is not a valid symbol (letters, digits and . : _ - / ^ =, at most 50)"
        )
    return sym


class Role(StrEnum):
    """What a process of a deployment does (`--role`); compares equal to its name."""

    ALL = "all"  # the whole pipeline in one process
    QUERY = "query"  # source -> bus
    ANALYZER = "analyzer"  # bus -> windows -> sinks
    MONITOR = "monitor"  # a screen over a running Kafka deployment

    @property
    def has_feed(self) -> bool:
        """Reads the websocket feed (or a replay) and publishes its trades to the bus."""
        return self in (Role.ALL, Role.QUERY)

    @property
    def analyzes(self) -> bool:
        """Consumes the trades and keeps the windows."""
        return self in (Role.ALL, Role.ANALYZER)


class _Section(BaseModel):
    # Frozen: one Settings object is read by the engine thread and the screen at once; a
    # change (the watchlist, an alert, the theme) goes through an explicit command instead.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatorConfig(_Section):
    """The built-in market simulator (a local websocket server speaking Finnhub's protocol)."""

    rate: float = Field(200.0, gt=0, description="total trades per second")
    duplicate_fraction: float = Field(0.02, ge=0, le=1, description="trades sent twice")
    ping_interval: Duration = Field(5.0, gt=0)
    symbol_limit: int = Field(50, ge=1)
    drop_every: Duration = Field(0.0, description="fault: drop the connection every N (0 = off)")
    stall_after: Duration = Field(0.0, description="fault: go silent after N (0 = off)")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="fault: fraction of bad frames")
    port: int = Field(0, ge=0, le=65535, description="0 = any free port")
    seed: int | None = None


class SourceConfig(_Section):
    """Where trades come from."""

    kind: Literal["simulator", "finnhub", "replay"] = "simulator"
    url: str = "wss://ws.finnhub.io"
    token: SecretStr | None = Field(None, description="Finnhub API token (or FINNHUB_TOKEN)")
    watchdog: Duration = Field(10.0, gt=0, description="no frame for this long = dead connection")
    rest_url: str = Field(
        "https://finnhub.io/api/v1",
        description="Finnhub REST base, for the previous close the screen's day change uses",
    )
    max_frame_bytes: int = Field(
        1_048_576, ge=1024, description="frames up to this are parsed; longer ones are dropped"
    )
    frame_cap_bytes: int = Field(
        16_777_216,
        ge=1024,
        description="frames up to this are read (and dropped when over max_frame_bytes); a "
        "longer one closes the connection, which reconnects with backoff",
    )
    dedup_horizon: Duration = Field(2.0, ge=0, description="0 disables the duplicate filter")
    record: Path | None = Field(None, description="write every raw frame to this file")
    record_max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="the recording stops growing here (record_full drops)"
    )
    replay: Path | None = Field(None, description="file to play back when kind = replay")
    replay_speed: float = Field(0.0, ge=0, description="0 = as fast as possible, 1 = recorded")
    lateness: Duration = Field(
        2.0,
        ge=0,
        description="quiet symbols' windows slide once the receive clock is this far past them "
        "(the watermark records the query side writes into the bus)",
    )
    max_future: Duration = Field(
        5.0,
        ge=0,
        description="trades stamped further ahead of their receive time are dropped "
        "(future_time): clock skew beyond it is a broken clock, not a market",
    )

    @model_validator(mode="after")
    def _cap_holds_a_frame(self) -> SourceConfig:
        if self.frame_cap_bytes < self.max_frame_bytes:
            raise ValueError(
                f"frame_cap_bytes ({self.frame_cap_bytes:,}) must be at least max_frame_bytes "
                f"({self.max_frame_bytes:,})"
            )
        return self

    @field_validator("rest_url")
    @classmethod
    def _rest_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError("must be a plain base URL (the token goes in source.token)")
        return v

    @field_validator("url")
    @classmethod
    def _ws_url(cls, v: str) -> str:
        """A URL the websocket client can dial: checked here, so that a typo is a clear error
        at start and never a reconnect loop (nor an error message carrying the token)."""
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        try:
            parts = urlsplit(v)
            port = parts.port  # raises on a port that is not a number in 0-65535
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if not parts.hostname:
            raise ValueError("has no host name")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (the token goes in source.token)")
        if any(k.lower() in SECRET_PARAMS for k, _ in parse_qsl(parts.query)):
            raise ValueError(
                "must not carry the token (it goes in source.token or FINNHUB_TOKEN, "
                "and is never shown)"
            )
        if parts.fragment or v.endswith("#"):
            raise ValueError("must not have a #fragment")
        if port == 0:
            raise ValueError("port 0 cannot be dialled")
        return v


class BusConfig(_Section):
    """The message bus between the source and the analyzer."""

    kind: Literal["memory", "kafka", "rabbitmq"] = "memory"
    max_batch: int = Field(
        2000, ge=1, le=100_000, description="flush to the bus at once at this many trades"
    )
    # Size or time, whichever first. Every flush is a request on a network bus, and on this
    # kind of machine each wake-up of a thread costs 0.1-0.25 ms of CPU: at a light pace the
    # fixed cost per flush, not the trades, is the bill. So a flush waits for `min_batch`
    # trades (or `max_wait`): at 10k trades/s a flush goes every ~30 ms, at 3k every 100 ms
    # (README, Benchmarks: live cost and p99 latency).
    min_batch: int = Field(
        300,
        ge=1,
        le=100_000,
        description="a flush before max_wait waits until this many trades are pending "
        "(at most max_batch)",
    )
    flush_interval: Duration = Field(
        0.02,
        gt=0,
        description="flush once the oldest pending trade has waited this long "
        "and min_batch trades are pending",
    )
    max_wait: Duration = Field(
        0.1,
        gt=0,
        description="flush once the oldest pending trade has waited this long "
        "(at least flush_interval)",
    )

    @property
    def longest_wait(self) -> float:
        """`max_wait`, read as at least `flush_interval` (overlapping values: the tighter)."""
        return max(self.max_wait, self.flush_interval)

    queue_size: int = Field(1000, ge=1, description="memory bus: flushes in flight (back-pressure)")
    buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="network buses: unacknowledged bytes kept for resending while the broker "
        "is away; past it, new trades are dropped and counted (bus_buffer_full)",
    )


class KafkaConfig(_Section):
    """Apache Kafka (bus.kind = kafka)."""

    bootstrap_servers: StrList = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topic: str = Field("stockup.trades", description="trade batches, key = symbol")
    metrics_topic: str = Field("stockup.metrics", description="window snapshots (for monitors)")
    control_topic: str = Field("stockup.control", description="watchlist changes (compacted)")
    status_topic: str = Field(
        "stockup.status", description="each process's status record (the monitor's cluster view)"
    )
    status_interval: Duration = Field(
        2.0, ge=0.2, le=60, description="seconds between a process's status records"
    )
    dead_letter_topic: str = Field("stockup.trades.dlq", description="poison messages")
    partitions: int = Field(6, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=100)
    retention: Duration = Field(86_400.0, gt=0, description="topic retention.ms (default 1 day)")
    group_id: str = Field("stockup-analyzer", min_length=1)
    session_timeout: Duration = Field(
        10.0, ge=6, le=300, description="a member silent this long leaves the group"
    )
    static_membership: bool = Field(
        True, description="a restarted analyzer gets its partitions back at once"
    )
    instance_id: str | None = Field(
        None, description="static member id (default: host name and a free slot number)"
    )
    client_id: str = "stockup-tui"
    linger: Duration = Field(
        0.0,
        ge=0,
        description="producer linger.ms (0: a flush's records already leave in one request)",
    )
    batch_bytes: int = Field(1_048_576, ge=1024, description="producer batch.size")
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "none"
    request_timeout: Duration = Field(30.0, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(None, description="or STOCKUP_KAFKA__SASL_PASSWORD")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class RabbitMQConfig(_Section):
    """RabbitMQ (bus.kind = rabbitmq)."""

    host: str = "127.0.0.1"
    port: int = Field(5672, ge=1, le=65535)
    vhost: str = "stocks"
    username: str = "stockup"
    password: SecretStr | None = Field(None, description="or STOCKUP_RABBITMQ__PASSWORD")
    tls: bool = False
    tls_cafile: Path | None = None
    exchange: str = Field("stockup.trades", description="topic exchange, routing key = symbol")
    queue: str = Field("stockup.trades", description="the analyzer's queue")
    queue_type: Literal["stream", "quorum", "classic"] = "stream"
    max_age: Duration = Field(86_400.0, gt=0, description="stream x-max-age (default 1 day)")
    dead_letter_exchange: str = "stockup.dlx"
    dead_letter_queue: str = "stockup.trades.dlq"
    prefetch: int = Field(500, ge=1, le=65_535)
    heartbeat: Duration = Field(30.0, ge=0)
    checkpoint: Path | None = Field(
        None, description="analyzer offset + watermark file (default: in the user data dir)"
    )


class InfluxConfig(_Section):
    """InfluxDB sink (1.x through /write, 1.8+ and 2.x through /api/v2/write)."""

    enabled: bool = False
    url: str = "http://127.0.0.1:8086"
    api: Literal["auto", "v1", "v2"] = Field("auto", description="auto = from the server's version")
    token: SecretStr | None = Field(None, description="2.x token, or 'user:password' on 1.8+")
    org: str = "stockup"
    bucket: str = Field("stock/stock_rp", description="2.x bucket, or 'database/rp' on 1.x")
    username: str | None = Field(None, description="1.x /write user")
    password: SecretStr | None = Field(None, description="1.x /write password")
    retention: Duration = Field(7 * 86_400.0, gt=0, description="when it creates the database")
    create: bool = Field(True, description="create the database/bucket when missing")
    batch_size: int = Field(5000, ge=1)
    flush_interval: Duration = Field(1.0, gt=0)
    buffer_points: int = Field(
        200_000, ge=1, description="points kept while InfluxDB is away; past it, counted drops"
    )
    ops_interval: Duration = Field(5.0, gt=0, description="operational figures period")
    timeout: Duration = Field(10.0, gt=0)


class SinksConfig(_Section):
    """Where emitted window snapshots go besides the screen."""

    jsonl: Path | None = Field(None, description="append every emitted snapshot to this file")
    jsonl_max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="the JSONL file stops growing here (jsonl_full drops)"
    )
    influx: InfluxConfig = Field(default_factory=InfluxConfig)


class HeadlessConfig(_Section):
    status_interval: Duration = Field(5.0, gt=0, description="seconds between status lines")


class UIConfig(_Section):
    """The dashboard screen."""

    theme: str = Field("stockup-dark", description="theme name (built-in or from a theme file)")
    refresh: Duration = Field(0.1, ge=0.02, le=5, description="screen refresh period")
    watchlist: str = Field("main", description="active watchlist: main (= symbols) or a name")
    show_log: bool = Field(False, description="show the event log pane at start")
    bell: bool = Field(False, description="ring the terminal bell when a price alert fires")


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: Path | None = None


@dataclass(frozen=True)
class Problem:
    """A rule that spans settings, broken: the keys that decide it (the first is the one to
    change, as a rule) and what is wrong."""

    keys: tuple[str, ...]
    message: str

    @property
    def text(self) -> str:
        return f"{self.keys[0]}: {self.message}"

    def explain(self, origins: Mapping[str, str]) -> str:
        """The message with where each key's value came from."""
        where = ", ".join(f"{k} from {origins.get(k, 'default')}" for k in self.keys)
        return f"{self.text} ({where})"


class Settings(_Section):
    """The whole configuration."""

    role: Role = Field(
        Role.ALL,
        description="all = whole pipeline; query = source -> bus; analyzer = bus -> windows -> "
        "sinks; monitor = screen over a running cluster (kafka)",
    )
    symbols: StrList = Field(
        default_factory=lambda: ["AAPL", "MSFT", "AMZN", "NVDA", "GOOGL", "TSLA", "META"],
        description="the watchlist",
    )
    windows: StrList = Field(default_factory=lambda: ["1m", "5m"])
    emit_interval: Duration = Field(1.0, gt=0, description="snapshot interval (event time)")
    stop_timeout: Duration = Field(
        30.0,
        gt=0,
        description="quitting waits at most this long for the bus and sinks to take what is "
        "pending, then gives up on it (exit code 3)",
    )
    max_symbols: int = Field(
        10_000,
        ge=1,
        description="symbols the analyzer tracks per bus partition; trades of a symbol past "
        "that are dropped (too_many_symbols)",
    )
    source: SourceConfig = Field(default_factory=SourceConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    rabbitmq: RabbitMQConfig = Field(default_factory=RabbitMQConfig)
    alerts: StrList = Field(
        default_factory=list,
        description="price alerts such as 'AAPL above 190.5' (set and removed on screen too)",
    )
    watchlists: dict[str, StrList] = Field(
        default_factory=dict, description="extra named watchlists, cycled with Tab on screen"
    )
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    headless: HeadlessConfig = Field(default_factory=HeadlessConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for raw in v:
            sym = normalize_symbol(raw)
            if sym not in out:
                out.append(sym)
        return out

    @field_validator("watchlists")
    @classmethod
    def _watchlists(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, symbols in v.items():
            if not name.strip() or name == "main":
                raise ValueError(f"{name!r} cannot name a watchlist ('main' is `symbols`)")
            if not name.isprintable() or len(name) > 64:
                raise ValueError(
                    f"{name!r} cannot name a watchlist: at most 64 printable characters"
                )
            out[name] = cls._symbols(symbols)
        return out

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for text in v:
            alert = parse_alert(text)
            canonical = str(replace(alert, symbol=normalize_symbol(alert.symbol)))
            if canonical not in out:
                out.append(canonical)
        return out

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one window is needed")
        for w in v:
            secs = parse_duration(w)
            if secs < 1:
                raise ValueError(f"window {w!r} is shorter than 1s")
        return v

    @model_validator(mode="after")
    def _interval_fits(self) -> Settings:
        if self.emit_interval_ms > max(self.windows_ms):
            raise ValueError(
                f"emit_interval {self.emit_interval:g}s is longer than the longest window: "
                "every trade must fall in the window of the next snapshot"
            )
        return self

    @model_validator(mode="after")
    def _rules_hold(self, info: ValidationInfo) -> Settings:
        """Rules that span sections, checked with the rest (the `config` command defers them
        to print the settings first: `load_config(check_rules=False)`)."""
        if info.context is not None and not info.context.get("rules", True):
            return self
        problems = self.problems()
        if problems:
            raise PydanticCustomError(
                "cross_setting",
                "{text}",
                {"text": "; ".join(p.text for p in problems), "problems": problems},
            )
        return self

    def problems(self) -> list[Problem]:
        """What cannot work together, each with the keys that decide it."""
        out: list[Problem] = []
        role, src, bus = self.role, self.source, self.bus.kind
        if role == Role.MONITOR and bus != "kafka":
            out.append(
                Problem(
                    ("bus.kind", "role"),
                    "role 'monitor' reads the Kafka metrics topic (bus.kind = 'kafka')",
                )
            )
        elif bus == "memory" and role != Role.ALL:
            out.append(
                Problem(
                    ("bus.kind", "role"),
                    f"role {role.value!r} needs a network bus between processes "
                    "(bus.kind = 'kafka' or 'rabbitmq')",
                )
            )
        if not role.has_feed:
            return out
        if src.kind == "replay":
            if src.replay is None:
                out.append(
                    Problem(
                        ("source.replay", "source.kind"),
                        "a file is needed when source.kind = 'replay'",
                    )
                )
            elif not src.replay.is_file():
                out.append(Problem(("source.replay",), f"file not found: {src.replay}"))
        elif src.kind == "finnhub" and src.token is None and "finnhub.io" in src.url:
            out.append(
                Problem(
                    ("source.token", "source.kind"),
                    "Finnhub needs an API token (set FINNHUB_TOKEN or source.token), "
                    "or use source.kind = 'simulator'",
                )
            )
        return out

    @property
    def windows_ms(self) -> list[int]:
        return sorted({round(parse_duration(w) * 1000) for w in self.windows})

    @property
    def emit_interval_ms(self) -> int:
        return max(1, round(self.emit_interval * 1000))


SECRET_KEYS = {
    "source.token",
    "kafka.sasl_password",
    "rabbitmq.password",
    "sinks.influx.token",
    "sinks.influx.password",
}


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


@dataclass
class LoadedConfig:
    """Validated settings plus where every value came from."""

    settings: Settings
    origins: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def problems(self) -> list[str]:
        """The broken cross-setting rules, each with its keys' origins (none once checked)."""
        return [p.explain(self.origins) for p in self.settings.problems()]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part!r} is not a section")
        node[leaf] = value
    return tree


def known_keys() -> set[str]:
    keys: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                keys.add(f"{prefix}{name}")

    walk(Settings, "")
    return keys


#: STOCKUP_* variables that are not settings: the config file's path, the test suite's switch,
#: and where scripts/ keep the development servers' data.
NOT_SETTINGS = frozenset({"STOCKUP_CONFIG", "STOCKUP_REQUIRE_SERVICES", "STOCKUP_SERVICES_DIR"})


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted keys from ``STOCKUP_*`` variables (and ``FINNHUB_TOKEN``)."""
    known = known_keys()
    out: dict[str, str] = {}
    token = environ.get("FINNHUB_TOKEN")
    if token:
        out["source.token"] = token
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        if dotted not in known:
            raise ConfigError(f"{name} (from the environment): {unknown_key_message(dotted)}")
        out[dotted] = value
    return out


#: Settings of earlier versions and what replaced them (None: gone, with the reason).
MOVED = {
    "analyzer": "the [analyzer] section is gone: lateness is now source.lateness, and windows "
    "slide on the watermark records of the log (analyzer.clock is no more)",
    "analyzer.lateness": "now source.lateness",
    "analyzer.clock": "gone: quiet windows slide on the watermark records of the log",
}


def unknown_key_message(key: str) -> str:
    """What to say of a setting that does not exist: what replaced it, or the nearest one."""
    if key in MOVED:
        return f"unknown setting ({MOVED[key]})"
    near = difflib.get_close_matches(key, sorted(known_keys()), n=1, cutoff=0.6)
    return f"unknown setting; did you mean {near[0]}?" if near else "unknown setting"


def _format_error(err: ValidationError, origins: Mapping[str, str]) -> str:
    lines: list[str] = []
    for e in err.errors():
        if e["type"] == "cross_setting":
            lines.extend(p.explain(origins) for p in e.get("ctx", {}).get("problems", ()))
            continue
        key = ".".join(str(part) for part in e["loc"])
        if e["type"] == "extra_forbidden":
            # pydantic names the first unknown level; the user typed the whole key.
            given = [k for k in origins if k.startswith(key + ".")] or [key]
            for full in given:
                where = origins.get(full, "")
                lines.append(
                    f"{full}: {unknown_key_message(full)}" + (f" (from {where})" if where else "")
                )
            continue
        msg = e["msg"].removeprefix("Value error, ")
        where = origins.get(key) or origins.get(key.rsplit(".", 1)[0], "")
        lines.append(f"{key}: {msg}" + (f" (from {where})" if where else ""))
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    check_rules: bool = True,
) -> LoadedConfig:
    """Builds the settings from defaults, file, environment and flags (`overrides`, dotted keys).

    `path=None` reads the default file when it exists; an explicit path must exist.
    `check_rules=False` leaves the cross-setting rules to `LoadedConfig.problems()`.
    """
    environ = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    merged: dict[str, Any] = {}

    file_path = path
    if file_path is None:
        candidate = Path(environ["STOCKUP_CONFIG"]) if environ.get("STOCKUP_CONFIG") else None
        file_path = candidate or default_config_path()
        if candidate is None and not file_path.exists():
            file_path = None
    if file_path is not None:
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file_path}") from exc
        except IsADirectoryError as exc:
            raise ConfigError(f"{file_path}: is a directory, not a config file") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file_path}: not UTF-8 text (byte {exc.start})") from exc
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot be read ({exc.strerror or exc})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from exc
        except RecursionError as exc:
            raise ConfigError(f"{file_path}: nested too deeply to be a config file") from exc
        except ValueError as exc:  # a NUL byte in the path: no file can have that name
            raise ConfigError(f"{str(file_path)!r}: not a usable file name ({exc})") from exc
        for key, value in _flatten(data).items():
            merged[key] = value
            origins[key] = f"file {file_path}"

    for key, value in env_overrides(environ).items():
        merged[key] = value
        origins[key] = "env FINNHUB_TOKEN" if key == "source.token" else "env"
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        merged[key] = value
        origins[key] = "flag"

    try:
        settings = Settings.model_validate(_nest(merged), context={"rules": check_rules})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origins)) from None
    return LoadedConfig(settings=settings, origins=origins, path=file_path)


def mask_secret(value: str) -> str:
    """Shows only enough of a secret to recognise it."""
    if len(value) <= 8:
        return "****"
    return f"{value[:2]}…{value[-2:]} ({len(value)} chars)"


def effective_items(loaded: LoadedConfig) -> list[tuple[str, str, str]]:
    """(key, shown value, origin) for every setting; secrets masked."""
    data = loaded.settings.model_dump(mode="python")
    rows = []
    for key, value in sorted(_flatten(data).items()):
        if isinstance(value, SecretStr):
            shown = mask_secret(value.get_secret_value())
        elif value is None:
            shown = "(unset)"
        elif isinstance(value, list):
            shown = ", ".join(map(str, value))
        else:
            shown = str(value)
        rows.append((key, shown, loaded.origins.get(key, "default")))
    return rows


def save_settings(path: Path, updates: Mapping[str, Any]) -> None:
    """Writes dotted-key `updates` into the TOML file at `path`, keeping everything else in it:
    other settings, comments, order and layout (tomlkit edits the document in place).

    Used by the screen so that the watchlists, alerts and theme survive a restart. The file is
    rewritten atomically.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    doc = tomlkit.parse(text)
    for dotted, value in updates.items():
        node: Any = doc
        *parents, leaf = dotted.split(".")
        for part in parents:
            if part not in node:
                node[part] = tomlkit.table()
            node = node[part]
        if isinstance(value, Mapping) and not value and leaf not in node:
            continue  # an empty table the file never had: nothing to write
        if isinstance(value, Mapping) and leaf in node and isinstance(node[leaf], Mapping):
            table = node[leaf]  # a table (watchlists): keep the entries' own comments
            for key in [k for k in table if k not in value]:
                del table[key]
            for key, item in value.items():
                table[key] = item
        else:
            node[leaf] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
    tmp.replace(path)
