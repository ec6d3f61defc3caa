"""Theme files: the shipped themes load, look readable and apply; bad files are reported."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.widgets import Footer, Static

from stockup_tui.themes import (
    ThemeError,
    builtin_theme_dir,
    discover_themes,
    load_theme_file,
    user_theme_dir,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("stockup-dark", "stockup-light")

GOOD = """
name = "mine"
dark = true
primary = "#336699"
background = "#101010"
success = "green"
[variables]
"footer-key-foreground" = "#88c0d0"
"input-selection-background" = "#81a1c1 35%"
"block-cursor-text-style" = "bold"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two opaque colours."""

    def luminance(hex_colour: str) -> float:
        def channel(c: int) -> float:
            v = c / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        col = Color.parse(hex_colour)
        return 0.2126 * channel(col.r) + 0.7152 * channel(col.g) + 0.0722 * channel(col.b)

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


class ThemedApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello", id="hello")
        yield Footer()


def test_builtin_dir_holds_the_shipped_themes() -> None:
    names = {p.stem for p in builtin_theme_dir().glob("*.toml")}
    assert set(SHIPPED) <= names


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_theme_loads_and_is_readable(name: str) -> None:
    theme = load_theme_file(builtin_theme_dir() / f"{name}.toml")
    assert theme.name == name
    assert theme.dark is (name == "stockup-dark")
    assert theme.background and theme.surface
    for key in ("foreground", "success", "warning", "error"):
        colour = getattr(theme, key)
        for ground in (theme.background, theme.surface):
            ratio = contrast(colour, ground)
            assert ratio >= 4.5, f"{name}: {key} on {ground} is only {ratio:.2f}:1"
    # Up and down must not look alike.
    assert contrast(theme.success, theme.error) > 1.0
    assert theme.success.lower() != theme.error.lower()


async def test_shipped_themes_register_and_apply() -> None:
    themes, errors = discover_themes([builtin_theme_dir()])
    assert errors == []
    app = ThemedApp()
    async with app.run_test(size=(60, 10)) as pilot:
        for theme in themes:
            app.register_theme(theme)
        for name in SHIPPED:
            app.theme = name
            await pilot.pause()
            assert app.theme == name
            assert app.current_theme.name == name
            expected = Color.parse(app.current_theme.background or "")
            assert app.screen.styles.background.rgb == expected.rgb


def test_user_theme_dir_is_under_the_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/tmp/xdg-test")
    path = user_theme_dir()
    assert path.name == "themes" and path.parent.name == "stockup-tui"
    if sys.platform.startswith("linux"):
        assert path == Path("/tmp/xdg-test/stockup-tui/themes")


def test_good_user_file(tmp_path: Path) -> None:
    theme = load_theme_file(write(tmp_path, "mine.toml", GOOD))
    assert theme.name == "mine" and theme.primary == "#336699"
    assert theme.variables["input-selection-background"] == "#81a1c1 35%"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD + '"Bad_Name" = "#000000"\n', "variables.Bad_Name"),
        ('name = "x"\nprimary = "#123456"\ncolour = "#000"\n', "'colour'"),
        ('primary = "#123456"\n', "'name'"),
        ('name = "x"\n', "'primary'"),
        ('name = "x"\nprimary = "#12345"\n', "'primary'"),
        ('name = "x"\nprimary = "#123456"\nerror = "reddish"\n', "'error'"),
        ('name = "x"\nprimary = "#123456"\nerror = 12\n', "'error'"),
        ('name = "x"\nprimary = "#123456"\ndark = "yes"\n', "'dark'"),
        ('name = "bad name!"\nprimary = "#123456"\n', "'name'"),
        ('name = "x"\nprimary = "#123456"\n[variables]\n"footer-key-foreground" = "zzz"\n', "foot"),
        ('name = "x"\nprimary = "#123456"\n[variables]\n"link-style" = "wobbly"\n', "link-style"),
        ('name = "x"\nprimary = "#123456"\n[variables]\n"a" = "red; }"\n', "variables.a"),
        ('name = "x"\nprimary = "#123456"\nvariables = 3\n', "'variables'"),
        ('name = "x"\nprimary = "#123456"\ntext_alpha = 3\n', "'text_alpha'"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ThemeError) as info:
        load_theme_file(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert isinstance(info.value, ValueError)


def test_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.toml", "name = \n")
    with pytest.raises(ThemeError, match="not valid TOML"):
        load_theme_file(path)


def test_discover_skips_bad_files_and_reports_them(tmp_path: Path) -> None:
    builtin, user = tmp_path / "builtin", tmp_path / "user"
    builtin.mkdir()
    user.mkdir()
    write(builtin, "a.toml", GOOD)
    write(builtin, "notes.txt", "not a theme")
    write(user, "b.toml", GOOD.replace('"mine"', '"other"'))
    bad = write(user, "c.toml", 'name = "c"\nprimary = "#123456"\nsparkle = true\n')
    write(user, "d.toml", GOOD.replace("#336699", "#ff0000"))  # same name "mine": user wins
    themes, errors = discover_themes([builtin, user, tmp_path / "missing"])
    by_name = {t.name: t for t in themes}
    assert set(by_name) == {"mine", "other"}
    assert by_name["mine"].primary == "#ff0000"
    assert len(errors) == 1 and str(bad) in errors[0] and "sparkle" in errors[0]


async def test_discovered_user_theme_applies(tmp_path: Path) -> None:
    write(tmp_path, "mine.toml", GOOD)
    themes, _ = discover_themes([tmp_path])
    app = ThemedApp()
    async with app.run_test(size=(60, 10)) as pilot:
        app.register_theme(themes[0])
        app.theme = "mine"
        await pilot.pause()
        assert app.current_theme.name == "mine"


def test_pyproject_ships_every_package() -> None:
    """The explicit setuptools package list must not silently miss a new subpackage."""
    pyproject = REPO / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not running from a source checkout")
    setup = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(setup["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "stockup_tui").rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to pyproject packages: {sorted(on_disk - listed)}"
    assert setup["package-dir"]["stockup_tui_themes"] == "themes"
    assert "stockup_tui_themes" in listed
    assert "*.toml" in setup["package-data"]["stockup_tui_themes"]


def test_readme_example_is_a_valid_theme(tmp_path: Path) -> None:
    readme = REPO / "themes" / "README.md"
    if not readme.exists():
        pytest.skip("not running from a source checkout")
    example = readme.read_text(encoding="utf-8").split("```toml\n", 1)[1].split("```", 1)[0]
    theme = load_theme_file(write(tmp_path, "example.toml", example))
    assert theme.name == "my-theme" and theme.variables
