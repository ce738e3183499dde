"""The job runner on its own: records that survive a restart, one job at a time (across two services
on one folder too), cancel, time limit, bounded logs, pruning, refusals, and applying an adapter.
The real eval and fine-tune jobs through the running service are in test_jobs_service.py; here a
stand-in child process (a script in place of the interpreter) stands still or fails on cue."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from streamwatch.config import JobsConfig, load_settings
from streamwatch.errors import JobRefused, NotApplied
from streamwatch.learning.jobs.records import JobFolder, JobRecord
from streamwatch.learning.jobs.runner import JobBusy, JobRunner
from streamwatch.learning.jobs.spec import ADAPTER_DIR, EvalOptions, FinetuneOptions, command
from streamwatch.learning.release.live import apply_adapter
from streamwatch.metrics import Metrics


def settings_in(folder: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "config.toml").write_text(f'[model]\nid = "org/model"\n{extra}', encoding="utf-8")
    return load_settings(folder / "config.toml")


def child(folder: Path, body: str) -> str:
    """An executable standing in for the interpreter: `python -m streamwatch ARGS` runs `body` (sh)."""
    path = folder / "child.sh"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


async def finished(runner: JobRunner, job_id: str, timeout: float = 30) -> JobRecord:
    async with asyncio.timeout(timeout):
        while runner.current() is not None:
            await asyncio.sleep(0.05)
    record = runner.get(job_id)
    assert record is not None
    return record


def test_a_job_runs_the_cli_keeps_its_output_and_says_why_it_failed(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    metrics = Metrics()

    async def main() -> None:
        ok = JobRunner(settings, metrics, python=child(tmp_path, 'echo "args: $*"; echo "wrote /x/eval.md"'))
        async with ok.running():
            record = await finished(ok, (await ok.submit(EvalOptions(target_precision=0.9))).id)
        assert record.state == "succeeded" and record.exit_code == 0 and record.error is None
        assert record.summary == ["wrote /x/eval.md"]
        log = (tmp_path / "data" / "jobs" / record.id / "output.log").read_text()
        assert f"args: -m streamwatch eval -c {settings.source} --out {tmp_path / 'data' / 'jobs' / record.id}" in log
        assert "--target-precision 0.9" in log and ok.files(record.id) == ["output.log"]

        bad = JobRunner(
            settings, metrics, python=child(tmp_path, 'echo working; echo "error: no labelled x" >&2; exit 2')
        )
        async with bad.running():
            record = await finished(bad, (await bad.submit(FinetuneOptions(steps=5))).id)
        assert (record.state, record.exit_code, record.error) == ("failed", 2, "no labelled x")
        assert record.options == FinetuneOptions(steps=5).model_dump()

        crash = JobRunner(settings, metrics, python=child(tmp_path, "echo last words; exit 3"))
        async with crash.running():
            record = await finished(crash, (await crash.submit(EvalOptions())).id)
        assert record.error == "exit status 3: last words"

    asyncio.run(main())
    text = metrics.render().decode()
    assert 'streamwatch_jobs_total{kind="eval",state="succeeded"} 1.0' in text
    assert 'streamwatch_jobs_total{kind="finetune",state="failed"} 1.0' in text
    assert "streamwatch_job_running 0.0" in text


def test_one_job_at_a_time_even_across_two_services_on_one_folder(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)

    async def main() -> None:
        python = child(tmp_path, "sleep 60")
        first, second = JobRunner(settings, python=python), JobRunner(settings, python=python)
        async with first.running(), second.running():
            job = await first.submit(EvalOptions())
            with pytest.raises(JobBusy, match=f"job {job.id} \\(eval\\) is running: one job at a time"):
                await first.submit(FinetuneOptions())
            with pytest.raises(JobBusy, match="another streamwatch instance runs a job"):
                await second.submit(EvalOptions())
            with pytest.raises(JobRefused, match="is not running"):
                await second.cancel(job.id)
            cancelled = await first.cancel(job.id)
            assert cancelled.state == "cancelled" and cancelled.error == "cancelled by an operator"
            again = await second.submit(EvalOptions())  # the lock is free once the first job ended
            assert second.current() == again
            async with JobRunner(settings, python=python).running():  # a third instance starting meanwhile
                assert second.get(again.id).state == "running"  # type: ignore[union-attr]  # not "interrupted"
        assert second.get(again.id).state == "interrupted"  # type: ignore[union-attr]  # the service stopped

    asyncio.run(main())


def test_a_job_left_running_by_a_killed_service_is_marked_interrupted(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    folder = JobFolder(tmp_path / "data" / "jobs")
    folder.save(JobRecord("20261129-100000-abcd", "eval", {}, "running", "2026-11-29T10:00:00+00:00"))
    (folder.root / "20261129-100001-abcd").mkdir()
    (folder.root / "20261129-100001-abcd" / "job.json").write_text("{broken", encoding="utf-8")

    async def main() -> None:
        async with JobRunner(settings).running():
            pass

    asyncio.run(main())
    (record,) = folder.all()  # the unreadable one is left out, not a crash
    assert record.state == "interrupted" and record.error == "the service stopped while it ran"


def test_a_job_over_its_time_is_stopped_and_its_log_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamwatch.learning.jobs.runner as runner_module

    monkeypatch.setattr(runner_module, "MAX_LOG_BYTES", 1000)
    settings = settings_in(tmp_path)
    settings = settings.model_copy(
        update={"jobs": JobsConfig.model_construct(**(dict(settings.jobs) | {"timeout_s": 1}))}
    )

    async def main() -> JobRecord:
        runner = JobRunner(settings, python=child(tmp_path, "head -c 5000 /dev/zero | tr '\\0' x; echo; sleep 60"))
        async with runner.running():
            return await finished(runner, (await runner.submit(EvalOptions())).id)

    record = asyncio.run(main())
    assert record.state == "timed out" and "jobs.timeout_s (1 s)" in str(record.error)
    log = (tmp_path / "data" / "jobs" / record.id / "output.log").read_text()
    assert log.startswith("x" * 1000) and log.endswith("[4001 more bytes of output not kept]\n")


def test_old_jobs_are_pruned_but_not_the_applied_adapter_or_a_running_one(tmp_path: Path) -> None:
    folder = JobFolder(tmp_path)
    for minute in range(6):
        state = "running" if minute == 5 else "succeeded"
        applied = "2026-11-29T10:00:00+00:00" if minute == 0 else None
        folder.save(JobRecord(f"20261129-10{minute:02d}00-abcd", "finetune", {}, state, "t", applied_at=applied))
    assert folder.prune(2) == ["20261129-100200-abcd", "20261129-100100-abcd"]
    assert [r.id[9:13] for r in folder.all()] == ["1005", "1004", "1003", "1000"]
    assert folder.path("../etc") is None and folder.get("../../x") is None


def test_adapter_choices_are_checked_and_turned_into_the_command_line(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    runner = JobRunner(settings)
    done = JobRecord("20261129-100000-abcd", "finetune", {}, "succeeded", "t")
    failed = JobRecord("20261129-100100-abcd", "finetune", {}, "failed", "t")
    runner.folder.save(done), runner.folder.save(failed)
    args = command(
        EvalOptions(adapter="none", compare_adapter=done.id), settings.source, tmp_path, "cpu", runner._adapter_of
    )
    assert args[args.index("--adapter") + 1] == "none"
    assert args[args.index("--compare-adapter") + 1] == str(runner.folder.root / done.id / ADAPTER_DIR)
    assert (
        command(EvalOptions(compare_adapter="config"), settings.source, tmp_path, "cpu", runner._adapter_of)[-1]
        == "none"
    )
    for bad in (failed.id, "20261129-100200-abcd"):
        with pytest.raises(JobRefused, match=f"adapter '{bad}': no finished fine-tune job"):
            runner._adapter_of(bad)
    tuned = command(FinetuneOptions(steps=7, holdout=0.3), settings.source, tmp_path, "cuda:1", runner._adapter_of)
    assert tuned[:5] == ["model", "finetune", str(tmp_path / ADAPTER_DIR), "-c", str(settings.source)]
    assert "--from-reviews" in tuned and tuned[tuned.index("--steps") + 1] == "7" and "cuda:1" in tuned
    assert "--augment" in tuned and FinetuneOptions().steps == 400  # the command line's defaults
    plain = command(FinetuneOptions(augment=False), settings.source, tmp_path, "cpu", runner._adapter_of)
    assert "--no-augment" in plain and "--augment" not in plain
    other = command(
        EvalOptions(compare_rules="rules-b", compare_model="org/other"),
        settings.source,
        tmp_path,
        "cpu",
        runner._adapter_of,
    )
    assert other[-2:] == [f"--compare-rules={settings.source.parent / 'rules-b'}", "--compare-model=org/other"]
    manifests = [tmp_path / "a.toml", tmp_path / "b.toml"]
    for options in (EvalOptions(), FinetuneOptions()):
        given = command(options, settings.source, tmp_path, "cpu", runner._adapter_of, manifests)
        at = given.index("--clips")
        assert given[at + 1 : at + 3] == [str(path) for path in manifests]


def write_adapter(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "marker": marker}))
    (folder / "adapter_model.safetensors").write_bytes(marker.encode())
    return folder


def test_applying_an_adapter_fills_the_slot_or_repoints_its_link(tmp_path: Path) -> None:
    new = write_adapter(tmp_path / "jobs" / "a" / "adapter", "new")
    unset = settings_in(tmp_path)
    with pytest.raises(NotApplied, match=r"model\.adapter is not set"):
        apply_adapter(unset, new)
    (tmp_path / "slot").mkdir()  # an empty folder: a slot waiting for an adapter
    not_watched = settings_in(tmp_path, 'adapter = "slot"\nwatch_s = 0\n')
    with pytest.raises(NotApplied, match=r"model\.watch_s is 0"):
        apply_adapter(not_watched, new)  # from the command line: nothing would load it
    apply_adapter(not_watched, new, service_loads=True)  # a release job: the service hands it to the model
    assert (tmp_path / "slot" / "adapter_model.safetensors").read_bytes() == b"new"
    for name in os.listdir(tmp_path / "slot"):
        (tmp_path / "slot" / name).unlink()
    settings = settings_in(tmp_path, 'adapter = "slot"\n')
    apply_adapter(settings, new)
    assert sorted(os.listdir(tmp_path / "slot")) == ["adapter_config.json", "adapter_model.safetensors"]
    assert (tmp_path / "slot" / "adapter_model.safetensors").read_bytes() == b"new"
    (tmp_path / "slot" / "adapter_model.bin").write_bytes(b"old")  # an earlier adapter's other format
    apply_adapter(settings, new)
    assert not (tmp_path / "slot" / "adapter_model.bin").exists()
    with pytest.raises(NotApplied, match=r"no adapter_config\.json"):
        apply_adapter(settings, tmp_path / "jobs")

    other = write_adapter(tmp_path / "jobs" / "b" / "adapter", "other")
    (tmp_path / "link").symlink_to(new)
    linked = settings_in(tmp_path, 'adapter = "link"\n')
    apply_adapter(linked, other)
    assert (tmp_path / "link").is_symlink() and (tmp_path / "link").resolve() == other.resolve()
    assert (new / "adapter_model.safetensors").read_bytes() == b"new"  # the earlier job's adapter untouched
    apply_adapter(linked, None)  # no adapter: the link points at an empty folder
    assert (tmp_path / "link").is_symlink() and os.listdir(tmp_path / "link") == []
    apply_adapter(settings, None)  # no adapter: the folder emptied
    assert os.listdir(tmp_path / "slot") == []


def test_jobs_can_be_switched_off(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, "[jobs]\nenabled = false\n")

    async def main() -> None:
        with pytest.raises(JobRefused, match=r"jobs are off in this service \(\[jobs\] enabled = false\)"):
            await JobRunner(settings).submit(EvalOptions())

    asyncio.run(main())


@pytest.mark.parametrize("folder", ["/etc", "../rules", "rules/../../x", "a/..", "C:\\rules", "rules\\..\\..\\x"])
def test_compare_rules_stays_within_the_config_folder(folder: str) -> None:
    with pytest.raises(ValidationError, match="relative to the config's folder"):
        EvalOptions(compare_rules=folder)
    assert EvalOptions(compare_rules="rules-b").compare_rules == "rules-b"
    assert EvalOptions(compare_rules="sub/rules.v2").compare_rules == "sub/rules.v2"
