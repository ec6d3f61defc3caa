"""docker-compose.yaml stays in step with the program: every stockup-tui service's command and
environment is one `stockup-tui` accepts, and builds the pipeline of the role it names (no
Docker here: this is what can be checked without it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import yaml

from stockup_tui.config import load_config
from stockup_tui.engine.wiring import build_pipeline
from tests.helpers import REPO

COMPOSE = REPO / "docker-compose.yaml"
IMAGE = "stockup-tui:local"


def expand(value: object) -> str:
    """Compose's `${NAME:-default}` with nothing set: the default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", str(value))


def stockup_services() -> dict[str, dict[str, Any]]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: svc for name, svc in services.items() if svc.get("image") == IMAGE}


def effective(command: list[str], env: dict[str, str]) -> dict[str, str]:
    """`stockup-tui COMMAND... config` as the container would run it: key -> value."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOCKUP_")}
    out = subprocess.run(
        [sys.executable, "-m", "stockup_tui", *command, "config"],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    values = {}
    for line in out.stdout.splitlines()[1:]:
        key, _, rest = line.partition(" ")
        values[key] = rest.rsplit("#", 1)[0].strip()
    return values


def test_query_and_analyzer_are_separate_services_and_a_monitor_attaches() -> None:
    services = stockup_services()
    assert set(services) == {"query", "analyzer", "monitor"}
    roles = {}
    for name, svc in services.items():
        env = {key: expand(value) for key, value in svc["environment"].items()}
        values = effective(svc["command"], env)
        roles[name] = values["role"]
        assert values["bus.kind"] == "kafka", name
        assert values["kafka.bootstrap_servers"] == "kafka:9092", name
        assert ("--headless" in svc["command"]) == (name != "monitor"), name
        # The rules across settings (a role's bus, the sinks) hold too.
        flags = {"role": values["role"]}
        build_pipeline(load_config(overrides=flags, environ=env).settings)
    assert roles == {"query": "query", "analyzer": "analyzer", "monitor": "monitor"}
    # `--scale analyzer=N` needs a service without a fixed name or published port.
    assert not {"container_name", "ports", "hostname"} & set(services["analyzer"])
    assert services["monitor"].get("profiles") == ["monitor"]  # `run`, not `up`
    assert services["monitor"].get("tty") is True


def test_the_influx_sink_of_the_deployment_is_configured_for_the_bundled_server() -> None:
    env = {k: expand(v) for k, v in stockup_services()["analyzer"]["environment"].items()}
    values = effective(["--headless", "--role", "analyzer"], env)
    assert values["sinks.influx.enabled"] == "True"
    assert values["sinks.influx.url"] == "http://influxdb:8086"
