"""One logging configuration for the server (dictConfig), with the `extra=` context on each line."""

from __future__ import annotations

import logging
import logging.config

RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class ContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in RESERVED and not k.startswith("_")}
        return line + ("  " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")


def setup_logging(level: str = "INFO") -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"()": ContextFormatter, "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"uvicorn.access": {"level": "WARNING"}},
    })
