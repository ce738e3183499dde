"""`streamwatch model finetune`: a LoRA adapter trained on the demo site's labelled examples, with its
seeded held-out split and before/after report; `eval --compare-adapter`; and the bad inputs: no
examples, a taken output folder, wrong numbers, a broken adapter in the config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.demo_site import demo_site, label_boards

from streamwatch.learning.evaluation.examples import Example
from streamwatch.learning.finetune.data import held_out


def site(tmp_path: Path, boards: int) -> Path:
    """The shipped config and rules, with `boards` answered label requests of solder-bridge on the line."""
    config, events, labels = demo_site(tmp_path)
    label_boards(labels, boards, np.random.default_rng(7))
    events.db.close()
    return config


def streamwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "streamwatch", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd)


def test_the_held_out_split_is_seeded_and_stable() -> None:
    picture = Image.new("RGB", (4, 4))
    examples = [Example("line", "r", True, "label", f"id{i}", picture) for i in range(400)]
    chosen = [held_out(e, 0.25, seed=0) for e in examples]
    assert chosen == [held_out(e, 0.25, seed=0) for e in examples]  # the same examples every time
    assert 70 <= sum(chosen) <= 130  # about a quarter
    assert chosen != [held_out(e, 0.25, seed=1) for e in examples]  # another seed, another split


@pytest.mark.slow
def test_finetune_writes_an_adapter_and_a_before_after_report_that_eval_and_the_config_take(tmp_path: Path) -> None:
    config = site(tmp_path, 48)
    out = tmp_path / "adapters" / "v1"
    result = streamwatch(
        "model", "finetune", str(out), "-c", str(config), "--from-reviews", "--steps", "20", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "step 20 of 20, loss " in result.stderr  # not a terminal (a job's log): progress as lines
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    report = json.loads((out / "finetune.json").read_text())
    training = report["training"]
    before, after = report["candidates"]
    assert before["adapter"] is None and after["adapter"] == str(out)
    (row_before,) = before["rows"]
    (row_after,) = after["rows"]
    assert row_before["rule"] == row_after["rule"] == "solder-bridge"
    assert training["examples"] + row_before["n"] == 48 and row_before["n"] == row_after["n"] > 0
    assert training["per_rule"] == {"solder-bridge": training["examples"]}
    trained = json.loads((out / "trained.json").read_text())["examples"]  # what the release gate leaves out
    assert len(set(trained)) == training["examples"]
    losses = [loss for _step, loss in training["loss"]]
    assert len(losses) == 2 and losses[-1] < losses[0]  # steps 10 and 20: it learned
    shown = (out / "finetune.md").read_text()
    assert f"LoRA adapter (rank 8) on {training['examples']} labelled examples" in shown
    assert training["settings"]["augment"] is True and "20 steps of 16, each draw jittered" in shown  # the default
    assert "## A against B" in shown and (out / "finetune.png").read_bytes()[:4] == b"\x89PNG"
    assert "Left out of training: none." in shown  # nothing was: said so, as it would name what was
    assert "None" not in result.stdout  # a missing figure reads as "-" or says why there is none

    # eval compares the model with and without it; the config takes it
    compared = streamwatch(
        "eval", "-c", str(config), "--compare-adapter", str(out), "--out", str(tmp_path / "eval"), cwd=tmp_path
    )
    assert compared.returncode == 0, compared.stderr
    both = json.loads((tmp_path / "eval" / "eval.json").read_text())["candidates"]
    assert [c["adapter"] for c in both] == [None, str(out)] and both[0]["rows"][0]["n"] == 48
    text = config.read_text().replace(
        'id = "./models/demo-glm4v"', 'id = "./models/demo-glm4v"\nadapter = "adapters/v1"'
    )
    config.write_text(text)
    checked = streamwatch("check", "-c", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # a second run into the same folder needs --force
    again = streamwatch("model", "finetune", str(out), "-c", str(config), "--from-reviews", cwd=tmp_path)
    assert again.returncode == 2 and "exists and is not empty (--force" in again.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "say where the labelled examples come from: --from-reviews"),
        (["--from-reviews", "--holdout", "1.5"], "--holdout 1.5: give the held-out share as a number between 0 and 1"),
        (["--from-reviews", "--steps", "0"], "--steps 0: must be at least 1"),
        (["--from-reviews", "--lr", "-1"], "--lr -1.0: must be above 0"),
        (["--from-reviews"], "0 usable training examples, at least 8 are needed"),
        (["--clips", "missing.toml"], "missing.toml"),
    ],
)
def test_finetune_refuses_bad_input_clearly(tmp_path: Path, extra: list[str], expected: str) -> None:
    config = site(tmp_path, 0)
    result = streamwatch("model", "finetune", str(tmp_path / "out"), "-c", str(config), *extra, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"adapter_model.safetensors": "x"}, "no adapter_config.json (not a peft adapter directory)"),
        ({"adapter_config.json": "{"}, "adapter_config.json is not readable JSON"),
        ({"adapter_config.json": '{"peft_type": "PREFIX_TUNING"}'}, "only LORA adapters are supported"),
        ({"adapter_config.json": '{"peft_type": "LORA"}'}, "no weights (adapter_model.safetensors"),
    ],
)
def test_a_broken_adapter_in_the_config_is_named_with_file_and_line(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    config = site(tmp_path, 0)
    (tmp_path / "broken").mkdir()
    for name, text in files.items():
        (tmp_path / "broken" / name).write_text(text)
    text = config.read_text().replace('id = "./models/demo-glm4v"', 'id = "./models/demo-glm4v"\nadapter = "broken"')
    config.write_text(text)
    result = streamwatch("check", "-c", str(config), cwd=tmp_path)
    assert result.returncode != 0 and "config.toml:13: model.adapter: adapter" in result.stderr, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_an_empty_adapter_folder_is_a_slot_the_model_runs_without(tmp_path: Path) -> None:
    config = site(tmp_path, 0)
    (tmp_path / "slot").mkdir()
    text = config.read_text().replace('id = "./models/demo-glm4v"', 'id = "./models/demo-glm4v"\nadapter = "slot"')
    config.write_text(text)
    result = streamwatch("check", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    config.write_text(text.replace('adapter = "slot"', 'adapter = "missing"'))
    missing = streamwatch("check", "-c", str(config), cwd=tmp_path)
    assert missing.returncode != 0 and "missing: no such directory" in missing.stderr
