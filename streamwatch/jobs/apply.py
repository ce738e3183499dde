"""A fine-tune job's adapter made the one the service runs: model.adapter's directory gets its files
(or, where model.adapter is a symlink, the link is pointed at the job's adapter), atomically file by
file, and the service's model watcher swaps it in without a restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from streamwatch.config import Settings
from streamwatch.inference.adapter import CONFIG, WEIGHTS, AdapterError, check_adapter_dir
from streamwatch.jobs.runner import JobRefused


def apply_adapter(settings: Settings, adapter: Path) -> None:
    target = settings.adapter_path()
    if target is None:
        raise JobRefused(
            'model.adapter is not set: set it in the config (e.g. model.adapter = "data/adapter", a folder) and '
            "restart once; after that, adapters apply without a restart"
        )
    if settings.model.watch_s <= 0:
        raise JobRefused("model.watch_s is 0: the service does not watch model.adapter; set watch_s (e.g. 5)")
    try:
        check_adapter_dir(adapter)
    except AdapterError as exc:
        raise JobRefused(str(exc)) from None
    if target.is_symlink():
        link = target.with_name(f".{target.name}.new")
        link.unlink(missing_ok=True)
        link.symlink_to(adapter.resolve(), target_is_directory=True)
        os.replace(link, target)
        return
    if target.exists() and not target.is_dir():
        raise JobRefused(f"model.adapter {target} is a file, not a folder")
    target.mkdir(parents=True, exist_ok=True)
    names = [name for name in WEIGHTS if (adapter / name).is_file()] + [CONFIG]  # the config last
    for name in names:
        temporary = target / f".{name}.new"
        shutil.copyfile(adapter / name, temporary)
        os.replace(temporary, target / name)
    for stale in set(WEIGHTS) - set(names):  # the other weights format, from an earlier adapter
        (target / stale).unlink(missing_ok=True)
