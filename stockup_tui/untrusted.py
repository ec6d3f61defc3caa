"""Text from outside (the network, files, the keyboard) on its way to a screen or a log.

Two helpers, used wherever such text crosses into the terminal, a Rich renderable or a log
record, so that nothing from outside can move the cursor, set the terminal's title, start a
forged log line or leak a secret:

* `printable(text)`: one line of plain characters. Anything `str.isprintable` refuses (control
  characters such as ESC, BEL, CR and LF, DEL, the C1 range, line and paragraph separators,
  bidirectional overrides and other format characters) is written as a visible escape (`\\x1b`,
  `\\n`, `\\u202e`). It says nothing about markup: hand the result to a widget as plain text
  (`Content`, `Text`, `markup=False`), never as a markup string.
* `redact(text)`: secrets that can ride in a URL or an error message (a `token=` or `apikey=`
  query value, the password of `user:password@host`) replaced by `***`.

`SafeFormatter` applies both to every log record (its message, and the exception text, whose
line breaks are kept but nothing else).
"""

from __future__ import annotations

import logging
import re
from types import TracebackType

#: Query parameters whose values are secrets (Finnhub's `token`, the usual others).
SECRET_PARAMS = frozenset(
    {"token", "apikey", "api_key", "api-key", "access_token", "access-token", "secret"}
    | {"password", "passwd", "pwd"}
)
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:" + "|".join(map(re.escape, sorted(SECRET_PARAMS))) + r")=)[^&#\s'\"]*"
)
#: `scheme://user:password@` in a URL.
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/@\s:'\"]*:)[^/@\s'\"]*@")

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# What `sys.exc_info()` returns, as `logging.Formatter.formatException` takes it.
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def printable(text: object, limit: int | None = None) -> str:
    """`text` as one line of printable characters (see the module docstring), at most `limit`
    characters (an ellipsis marks a cut)."""
    s = text if isinstance(text, str) else str(text)
    if not s.isprintable():
        s = "".join(ch if ch.isprintable() else _escape(ch) for ch in s)
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def _escape(ch: str) -> str:
    known = _ESCAPES.get(ch)
    if known is not None:
        return known
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def redact(text: str) -> str:
    """`text` with the secrets a URL can carry replaced by `***`."""
    if "=" in text:
        text = _SECRET_PARAM.sub(r"\1***", text)
    if "@" in text:
        text = _USERINFO.sub(r"\1***@", text)
    return text


def safe(text: object, limit: int | None = None) -> str:
    """`redact` then `printable`: for any text from outside on its way to a person."""
    return printable(redact(text if isinstance(text, str) else str(text)), limit)


def safe_lines(text: object) -> str:
    """`safe` line by line: the line breaks of a message of ours are kept, nothing else."""
    return "\n".join(safe(line) for line in str(text).split("\n"))


class SafeFormatter(logging.Formatter):
    """A formatter whose records cannot forge lines, move the cursor or show a secret."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            record.getMessage()
        except Exception:  # a format string that does not fit its args: show both, not a crash
            record.msg, record.args = f"{record.msg} {record.args!r}", None
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = safe(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:
        text = redact(super().formatException(ei))
        return "\n".join(printable(line) for line in text.split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(printable(line) for line in redact(stack_info).split("\n"))
