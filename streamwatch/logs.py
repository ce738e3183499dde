"""Log format and levels shared by every command."""

from __future__ import annotations

import logging

NOISY = ("httpx", "urllib3", "filelock", "huggingface_hub", "transformers", "apscheduler", "alembic")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
