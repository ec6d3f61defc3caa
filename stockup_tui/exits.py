"""The exit codes of `stockup-tui`, every mode alike (the README's "Exit codes" table)."""

from __future__ import annotations

OK = 0  # stopped cleanly: everything accepted was delivered
ERROR = 1  # an unexpected error (a bug): the log has the traceback
CONFIG = 2  # a bad config file, value, URL, flag or path: nothing was started
LOST = 3  # stopped, but data accepted was lost on the way out, or quitting was abandoned
