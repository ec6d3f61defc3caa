"""Colour themes as small TOML files, so users can restyle the screen without writing Python.

The files map one-to-one onto `textual.theme.Theme`. Everything is checked here, at load time,
because Textual only parses theme colours and variables when the theme is switched on — a typo
would otherwise crash the running dashboard instead of being reported once at start-up.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any

import platformdirs
from textual.color import Color, ColorParseError
from textual.theme import Theme

# Keys holding a colour; `primary` is the only one Textual insists on.
COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "success",
    "warning",
    "error",
)
REQUIRED_KEYS = ("name", "primary")
KNOWN_KEYS = frozenset(
    {"name", "dark", "luminosity_spread", "text_alpha", "variables", *COLOR_KEYS}
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIABLE_RE = re.compile(r"^[a-z][a-z0-9-]*$")


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the offending key."""


def builtin_theme_dir() -> Path:
    """The themes shipped in the wheel (the top-level `themes/` folder, packaged as a module)."""
    return Path(str(files("stockup_tui_themes")))


def user_theme_dir() -> Path:
    """Where users drop their own `*.toml` themes; it need not exist."""
    return Path(platformdirs.user_config_dir("stockup-tui")) / "themes"


def load_theme_file(path: Path) -> Theme:
    """Reads and fully validates one theme file.

    Raises:
        ThemeError: unreadable file, bad TOML, unknown key, missing name/primary, bad colour or a
            variable Textual's CSS parser would reject.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThemeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ThemeError(f"{path}: not valid TOML: {exc}") from exc
    return theme_from_mapping(data, source=str(path))


def theme_from_mapping(data: dict[str, Any], source: str = "<theme>") -> Theme:
    """Builds a `Theme` from parsed TOML; `source` prefixes every error message."""

    def fail(key: str, why: str) -> ThemeError:
        return ThemeError(f"{source}: {key!r}: {why}")

    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(KNOWN_KEYS))
        raise fail(unknown[0], f"unknown key (known keys: {known})")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise fail(key, "missing (required)")

    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail("name", "must be letters, digits, '-', '_' or '.' (at most 64)")

    kwargs: dict[str, Any] = {"name": name}
    for key in COLOR_KEYS:
        if key in data:
            kwargs[key] = _check_color(data[key], f"{source}: {key!r}: ")

    if "dark" in data:
        if not isinstance(data["dark"], bool):
            raise fail("dark", "must be true or false")
        kwargs["dark"] = data["dark"]
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise fail(key, "must be a number from 0 to 1")
            kwargs[key] = float(value)

    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise fail("variables", "must be a table of name = value")
    kwargs["variables"] = _check_variables(variables, source)

    theme = Theme(**kwargs)
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # belt and braces: anything Textual itself would choke on
        raise ThemeError(f"{source}: colours rejected by Textual: {exc}") from exc
    return theme


def discover_themes(dirs: Iterable[Path]) -> tuple[list[Theme], list[str]]:
    """Loads every `*.toml` in `dirs` (missing dirs are fine), never raising for a bad file.

    Returns the themes and one message per skipped file. A later directory overrides an earlier
    one for the same theme name, so a user's file can replace a shipped theme.
    """
    found: dict[str, Theme] = {}
    errors: list[str] = []
    for folder in dirs:
        folder = Path(folder)
        try:
            paths = sorted(p for p in folder.glob("*.toml") if p.is_file())
        except OSError as exc:
            errors.append(f"{folder}: cannot list: {exc.strerror or exc}")
            continue
        for path in paths:
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                errors.append(str(exc))
                continue
            except Exception as exc:  # a bad file must never stop the app
                errors.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            found.pop(theme.name, None)  # re-insert so the override also takes the later slot
            found[theme.name] = theme
    return list(found.values()), errors


# -- checks -----------------------------------------------------------------------------------


def _check_color(value: object, where: str) -> str:
    """`where` is the "file: 'key': " prefix of the error message."""
    if not isinstance(value, str):
        raise ThemeError(f'{where}must be a colour string such as "#1e90ff"')
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(
            f"{where}not a colour: {value!r} (use #rrggbb, rgb(...), hsl(...) or a name)"
        ) from None
    return value


def _check_variables(variables: dict[str, Any], source: str) -> dict[str, str]:
    """Each variable is parsed exactly as Textual will when the theme is applied."""
    checked: dict[str, str] = {}
    for name, value in variables.items():
        key = f"variables.{name}"
        if not _VARIABLE_RE.match(name):
            raise ThemeError(f"{source}: {key!r}: names are lower-case words joined by '-'")
        if not isinstance(value, str) or not value.strip():
            raise ThemeError(f"{source}: {key!r}: must be a non-empty string")
        why = _css_value_problem(name, value)
        if why:
            raise ThemeError(f"{source}: {key!r}: {why}: {value!r}")
        checked[name] = value
    return checked


def _css_value_problem(name: str, value: str) -> str | None:
    """Why Textual's stylesheet parser would reject `value` for variable `name`, or None."""
    if any(ch in value for ch in ";{}\n"):
        return "must be a single CSS value"
    try:
        from textual.css.stylesheet import Stylesheet
    except ImportError:  # pragma: no cover - a Textual without this module: skip the deep check
        return None
    props: tuple[str, ...]
    if name.endswith("style") or name.endswith("style-hover"):
        props, what = ("text-style",), 'not a text style (e.g. "bold", "none", "reverse")'
    else:
        props, what = ("color", "background"), 'not a colour (e.g. "#88c0d0", "#81a1c1 35%")'
    for prop in props:
        sheet = Stylesheet(variables={name: value})
        sheet.add_source(f"Widget {{ {prop}: ${name}; }}", read_from=("theme", name))
        try:
            sheet.parse()
        except Exception:
            continue
        return None
    return what
