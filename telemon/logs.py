"""Logging set-up: one line per event, as text or JSON, and log-once helpers."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

__all__ = ["LogFormat", "OnceLogger", "setup_logging"]

LogFormat = Literal["text", "json"]


class _TextFormatter(logging.Formatter):
    """`2026-01-02T03:04:05Z level logger: message`, never more than one line."""

    converter = staticmethod(time.gmtime)

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def setup_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Send telemon's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print a line per scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class OnceLogger:
    """Logs each distinct message once, so a failing field does not flood logs."""

    def __init__(self, logger: logging.Logger, limit: int = 1000) -> None:
        self._logger = logger
        self._seen: set[str] = set()
        self._limit = limit

    def warning(self, message: str) -> None:
        """Log `message` at WARNING unless it was logged before."""
        if message in self._seen:
            return
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(message)
        self._logger.warning("%s", message)
