"""Log format and levels shared by every command: text lines, or one JSON object a line for log
shippers (`log_format = "json"`: keys ts, level, logger, message and, with a traceback, exception)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from streamwatch.redact import RedactingFormatter, scrub

NOISY = ("httpx", "urllib3", "filelock", "huggingface_hub", "transformers", "apscheduler", "alembic", "apprise")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, every secret the process was given masked in each value."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Lines with every secret the process was given masked (streamwatch.redact), tracebacks included."""
    logging.basicConfig(level=level, format=FORMAT, datefmt="%H:%M:%S")
    formatter = JsonFormatter() if log_format == "json" else RedactingFormatter(FORMAT, datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    if log_format == "json" or level != "DEBUG":  # progress bars (models, downloads): not log lines
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
