"""Log format and levels shared by every command."""

from __future__ import annotations

import logging

from streamwatch.redact import RedactingFormatter

NOISY = ("httpx", "urllib3", "filelock", "huggingface_hub", "transformers", "apscheduler", "alembic")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    """Lines with every secret the process was given masked (streamwatch.redact), tracebacks included."""
    logging.basicConfig(level=level, format=FORMAT, datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(FORMAT, datefmt="%H:%M:%S"))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
