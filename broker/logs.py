"""One logging setup for every long-running command (``--log-level``, ``--log-format``).

Text for a terminal, JSON lines (python-json-logger) for a log pipeline. Client libraries
(kafka-python, aiokafka) are held at WARNING whatever the level: at DEBUG they log record keys
and values, which may hold raw identifiers.
"""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUIET_LIBRARIES = ("kafka", "aiokafka")


def quiet_client_logs() -> None:
    """Never let the Kafka clients log below WARNING (they print record contents at DEBUG)."""
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``); safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter  # noqa: PLC0415 - only when asked

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_client_logs()
