"""One logging configuration for the server (dictConfig), with the `extra=` context on each line."""

from __future__ import annotations

import logging
import logging.config
import re

RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# URLs in a log line lose their user:password and their query string (webhook URLs carry tokens there).
USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?#\"']*)\?[^\s#\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every URL's credentials and query string replaced, whoever logged it."""
    return QUERY.sub(r"\1?[redacted]", USERINFO.sub(r"\1[redacted]@", text))


class ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in RESERVED and not k.startswith("_")}
        return redact(line + ("  " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else ""))


def setup_logging(level: str = "INFO") -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"()": ContextFormatter, "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"handlers": ["console"], "level": level},
        # HTTP clients log every request's full URL at INFO: webhook URLs carry user:password and query tokens,
        # and upstream URLs their credentials. Their warnings still come through.
        # The MCP SDK logs each stateless request's end, and each tool error, at INFO: one line per call.
        "loggers": {"uvicorn.access": {"level": "WARNING"}, **{name: {"level": "WARNING"} for name in (
            "httpx", "httpx2", "httpcore", "openai", "mcp")}},
    })
