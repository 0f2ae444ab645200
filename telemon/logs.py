"""Logging set-up: one line per event, as text or JSON, and log-once helpers."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Literal

__all__ = ["LogFormat", "OnceLogger", "escape_text", "setup_logging"]

LogFormat = Literal["text", "json"]


class _TextFormatter(logging.Formatter):
    """`2026-01-02T03:04:05Z level logger: message`, one line of printable characters."""

    converter = staticmethod(time.gmtime)

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")

    def format(self, record: logging.LogRecord) -> str:
        return escape_text(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": escape_text(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = escape_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


# Upstream bodies, pushed lines and request paths reach log messages (in
# error reasons): escaped here, in the one place every record passes, so no
# call site can put a terminal escape sequence, a line break or raw binary
# into the log.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """`text` on one line of printable characters: each control or other
    non-printable character (line breaks, tabs, C0/C1 controls, lone
    surrogates, invisible separators) as a Python-style escape."""
    if text.isprintable():  # the common case: no copy
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def setup_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Send telemon's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print a line per scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


_DIGITS = re.compile(r"\d+")


class OnceLogger:
    """Logs each distinct message once, so a failing field does not flood logs."""

    def __init__(self, logger: logging.Logger, limit: int = 1000) -> None:
        self._logger = logger
        self._seen: set[str] = set()
        self._limit = limit

    def warning(self, message: str) -> None:
        """Log `message` at WARNING unless it was logged before."""
        # Numbers vary (a time, a count): one line per kind of message, not per value.
        key = _DIGITS.sub("#", message)
        if key in self._seen:
            return
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(key)
        self._logger.warning("%s", message)
