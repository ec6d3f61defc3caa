"""Configuration layering, validation messages, provenance and secret masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockup_tui.cli import main
from stockup_tui.config import (
    ConfigError,
    Role,
    Settings,
    effective_items,
    load_config,
    parse_duration,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file() -> None:
    loaded = load_config(environ={}, path=None)
    s = loaded.settings
    assert s.source.kind == "simulator"
    assert s.bus.kind == "memory"
    assert s.windows_ms == [60_000, 300_000]
    assert s.emit_interval_ms == 1000


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    path = write(tmp_path, 'symbols = ["aapl"]\n[simulator]\nrate = 10\nseed = 7\n')
    env = {"STOCKUP_SIMULATOR__RATE": "20", "STOCKUP_SYMBOLS": "msft, ibm"}
    loaded = load_config(path, {"simulator.rate": 30}, environ=env)
    s = loaded.settings
    assert s.simulator.rate == 30  # flag beats env beats file
    assert s.simulator.seed == 7  # file beats default
    assert s.symbols == ["MSFT", "IBM"]  # env beats file, normalised
    assert loaded.origins["simulator.rate"] == "flag"
    assert loaded.origins["symbols"] == "env"
    assert loaded.origins["simulator.seed"] == f"file {path}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[bus]\nkind = "kafak"\n', "bus.kind"),
        ('[source]\nwatchdog = "soon"\n', "source.watchdog"),
        ("[simulator]\nrate = -1\n", "simulator.rate"),
        ("[source]\nunknown_thing = 1\n", "source.unknown_thing"),
        ('windows = ["1m", "10ms"]\n', "windows"),
        ('symbols = ["AAPL", "not a symbol"]\n', "symbols"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert f"{key}:" in str(err.value)


def test_settings_of_earlier_versions_say_what_replaced_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[analyzer]\nlateness = "2s"\n'), environ={})
    assert "source.lateness" in str(err.value)


def test_emit_interval_longer_than_the_longest_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, 'windows = ["2s"]\nemit_interval = "5s"\n'), environ={})
    assert "emit_interval" in str(err.value) and "longest window" in str(err.value)


def test_unknown_env_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="STOCKUP_BUS__KINDZ"):
        load_config(environ={"STOCKUP_BUS__KINDZ": "x"})


def test_variables_that_are_not_settings_are_left_alone(tmp_path: Path) -> None:
    path = write(tmp_path, 'symbols = ["IBM"]\n')
    env = {"STOCKUP_CONFIG": str(path), "STOCKUP_REQUIRE_SERVICES": "1"}
    loaded = load_config(environ={**env, "STOCKUP_SERVICES_DIR": "/srv"})
    assert loaded.settings.symbols == ["IBM"] and loaded.path == path


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "symbols = [\n"), environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_token_from_env_is_masked_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    token = "sk_live_0123456789abcdef"
    loaded = load_config(environ={"FINNHUB_TOKEN": token})
    assert loaded.settings.source.token is not None
    assert loaded.settings.source.token.get_secret_value() == token
    shown = dict((k, v) for k, v, _ in effective_items(loaded))["source.token"]
    assert token not in shown and shown.startswith("sk")
    assert token not in repr(loaded.settings)


def test_durations() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    assert parse_duration(3) == 3.0
    with pytest.raises(ValueError):
        parse_duration("-1s")


def test_cli_config_command_prints_origins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINNHUB_TOKEN", "tok_abcdefghijklmnopqrstuvwxyz")
    path = write(tmp_path, "[simulator]\nrate = 42\n")
    assert main(["config", "--config", str(path), "--set", "source.watchdog=3s"]) == 0
    out = capsys.readouterr().out
    assert f"# file {path}" in out
    assert "source.watchdog" in out and "# flag" in out
    assert "tok_abcdefghijklmnopqrstuvwxyz" not in out


def test_cli_bad_config_exits_nonzero_naming_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[bus]\nmax_batch = 0\n")
    assert main(["--headless", "--config", str(path)]) == 2
    assert "bus.max_batch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flat", "said"),
    [
        ({"role": "analyzer"}, "bus.kind: role 'analyzer' needs a network bus"),
        ({"role": "monitor", "bus.kind": "rabbitmq"}, "reads the Kafka metrics topic"),
        ({"source.kind": "replay"}, "source.replay: a file is needed"),
        ({"source.replay": "/nonexistent/x.jsonl", "source.kind": "replay"}, "file not found"),
        ({"source.kind": "finnhub"}, "source.token: Finnhub needs an API token"),
    ],
)
def test_rules_across_settings_name_the_keys_and_their_origins(
    flat: dict[str, str], said: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=flat, environ={})
    text = str(err.value)
    assert said in text
    first = next(iter(flat))
    assert f"{first} from flag" in text  # where the value that breaks the rule came from


def test_rules_hold_for_settings_built_in_code_too() -> None:
    with pytest.raises(ValueError, match="needs a network bus"):
        Settings(role=Role.QUERY)
    assert Settings(role=Role.QUERY, bus={"kind": "kafka"}).problems() == []  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.symbols = ["IBM"]  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        s.ui.theme = "nord"  # type: ignore[misc]


def test_config_command_prints_the_settings_then_what_does_not_work_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 'role = "query"\n')
    assert main(["config", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "role" in captured.out and "# file" in captured.out  # the whole table first
    assert (
        "bus.kind: role 'query' needs a network bus between processes (bus.kind = 'kafka' or "
        f"'rabbitmq') (bus.kind from default, role from file {path})"
    ) in captured.err
    assert main(["config", "--config", str(path), "--set", "bus.kind=kafka"]) == 0


def test_readme_documents_every_setting() -> None:
    from stockup_tui.config import known_keys

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [key for key in sorted(known_keys()) if f"| `{key}` |" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (None, "is a directory"),
    ],
)
def test_an_unreadable_config_file_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, said: str
) -> None:
    path = tmp_path / "config.toml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert main(["--config", str(path), "config"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_unknown_keys_are_named_whole_with_the_nearest_one() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"kafka.bootstrap": "x", "nosuch.key": "1"}, environ={})
    text = str(err.value)
    assert "kafka.bootstrap: unknown setting; did you mean kafka.bootstrap_servers?" in text
    assert "nosuch.key: unknown setting" in text
    assert "Value error" not in text


def test_global_flags_work_before_and_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[simulator]\nrate = 7\n")
    assert main(["--config", str(path), "--set", "simulator.seed=4", "config"]) == 0
    out = capsys.readouterr().out
    assert "7.0" in out and "simulator.seed" in out and "4 " in out
    assert main(["config", "--config", str(path), "--set", "simulator.port=9"]) == 0
    out = capsys.readouterr().out
    assert "# file" in out and "9 " in out
