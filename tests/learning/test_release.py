"""`streamwatch release` on the shipped demo model: an adapter that changes nothing passes the gate,
a harmful one is refused (nothing changes) unless overridden with a reason (recorded), thresholds go
into the rule file with its comments, every change is a version and any live one can be rolled back
to; a rule with too few examples of an answer blocks an adapter change and says what to label."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.adapters import make_adapter
from support.demo_site import demo_site
from support.helpers import REPO

from streamwatch.alerts.recorder import jpeg
from streamwatch.cli.main import main
from streamwatch.store.db import Database
from streamwatch.store.labels import LabelStore, NewLabelRequest
from streamwatch.tools.demo.dataset import demo_tasks, example
from streamwatch.vocabulary import Label

RULES = ("solder-bridge", "missing-screw", "housing-scratch")  # the defect rules whose scenes vary


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return make_adapter(folder / "identity", 0.0), make_adapter(folder / "harmful", 0.5)


def label(labels: LabelStore, rule: str, truths: list[str], seed: int) -> None:
    (task,) = [t for t in demo_tasks(REPO / "rules") if t.rule.id == rule]
    rng = np.random.default_rng(seed)
    for index, truth in enumerate(truths):
        uid = f"{rule}-{index}"
        image = jpeg(Image.fromarray(example(task, rng, truth).image), 92)
        labels.add(NewLabelRequest(uid, "line", rule, "q", "m", "no", 0.5, 0.7, "uncertain", _now()), image)
        labels.set_label(uid, Label(truth))


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config, _store, labels = demo_site(tmp_path, own_rules=True)
    for name in ("perimeter.toml", "warehouse.toml"):
        (tmp_path / "rules" / name).unlink()
    defect = tmp_path / "rules" / "defect.toml"
    blocks = defect.read_text(encoding="utf-8").split("\n[[rules]]")
    defect.write_text("\n[[rules]]".join(blocks[: len(RULES) + 1]), encoding="utf-8")  # the header and 3 rules
    text = config.read_text(encoding="utf-8").replace(
        'id = "./models/demo-glm4v"', 'id = "./models/demo-glm4v"\nadapter = "data/adapter"\nwatch_s = 1'
    )
    config.write_text(text + "\n[release]\nkeep = 2\n", encoding="utf-8")
    (tmp_path / "data" / "adapter").mkdir()  # an empty slot: the model alone
    for number, rule in enumerate(RULES):
        label(labels, rule, ["yes", "no"] * 6, number)
    return config


def release(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["release", *args, "-c", str(config), "--by", "tester"])
    out, err = capsys.readouterr()
    return code, out, err


def slot_weights(config: Path) -> bytes | None:
    path = config.parent / "data" / "adapter" / "adapter_model.safetensors"
    return path.read_bytes() if path.is_file() else None


def test_the_gate_passes_a_harmless_adapter_refuses_a_harmful_one_and_versions_roll_back(
    site: Path, adapters: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    identity, harmful = adapters
    assert "no versions yet" in release(site, capsys, "list")[1]

    code, out, err = release(site, capsys, "apply", "--adapter", str(identity), "--out", str(site.parent / "r"))
    assert code == 0, err
    assert "release: version 2 is live (the gate passed)" in out
    for rule in RULES:
        assert f"gate: {rule} (6 yes, 6 no): ok, coarse" in out  # 6 of each cannot show a 0.5-point rise
    assert slot_weights(site) == (identity / "adapter_model.safetensors").read_bytes()
    gate = json.loads((site.parent / "r" / "gate.json").read_text())
    assert gate["passed"] and gate["version"] == 2 and len(gate["rules"]) == len(RULES)

    code, out, err = release(site, capsys, "apply", "--adapter", str(harmful))
    assert code == 1, out + err
    refusals = [line for line in err.splitlines() if line.startswith("refused: ")]
    assert refusals and all(any(f"refused: {rule}: " in line for rule in RULES) for line in refusals)
    assert any(word in err for word in ("recall", "precision", "false-positive rate"))
    assert "recorded as version 3 (nothing changed)" in err
    assert slot_weights(site) == (identity / "adapter_model.safetensors").read_bytes()  # untouched

    code, out, err = release(site, capsys, "apply", "--adapter", str(harmful), "--override", "line stopped: trying it")
    assert code == 0, err
    assert "version 4 is live (the gate overridden by tester: line stopped: trying it)" in out
    assert slot_weights(site) == (harmful / "adapter_model.safetensors").read_bytes()

    code, out, err = release(site, capsys, "rollback", "2")
    assert code == 0 and "back to version 2, live as version 5" in out, err
    assert slot_weights(site) == (identity / "adapter_model.safetensors").read_bytes()
    code, _out, err = release(site, capsys, "rollback", "3")
    assert code == 2 and "version 3 was refused: it never went live" in err

    listed = json.loads(release(site, capsys, "list", "--json")[1])
    assert [(v["version"], v["action"], v["outcome"]) for v in listed] == [
        (5, "rollback", "not gated"),
        (4, "apply", "overridden"),
        (3, "apply", "refused"),
        (2, "apply", "passed"),
        (1, "baseline", "not gated"),
    ]
    assert listed[1]["override_reason"] == "line stopped: trying it" and listed[1]["by"] == "tester"
    assert listed[2]["gate"]["refusals"] and listed[4]["adapter"] is None  # the baseline: no adapter
    assert listed[0]["rolled_back_to"] == 2

    # thresholds: only the changed rule is judged; written into its file with the comments kept
    defect = site.parent / "rules" / "defect.toml"
    code, out, err = release(site, capsys, "apply", "--threshold", "solder-bridge=0.65")
    assert code == 0, err
    verdicts = [line for line in out.splitlines() if line.startswith("gate: ") and " no): " in line]
    assert verdicts == ["gate: solder-bridge (6 yes, 6 no): ok, coarse"]
    text = defect.read_text(encoding="utf-8")
    assert text.startswith("# Production-line inspection") and "threshold = 0.65" in text
    assert text.count("threshold = 0.7") == len(RULES) - 1
    code, out, err = release(site, capsys, "rollback", "5")
    assert code == 0, err
    assert "change: solder-bridge: threshold 0.65 -> 0.7" in out
    assert defect.read_text(encoding="utf-8").count("threshold = 0.7") == len(RULES)

    # the newest release.keep (2) applied versions keep their adapter's files: 4's are gone by now
    assert release(site, capsys, "apply", "--adapter", "none")[0] == 0  # the bare model answers as identity
    assert not os.listdir(site.parent / "data" / "adapter")  # `none`: the slot emptied
    code, _out, err = release(site, capsys, "apply", "--adapter", str(harmful), "--override", "again")
    assert code == 0, err
    code, _out, err = release(site, capsys, "rollback", "4")
    assert code == 2 and "version 4: its adapter's files were removed" in err
    assert release(site, capsys, "rollback", "2")[0] == 0  # 2's copy is the one 5 and 7 made live too
    assert slot_weights(site) == (identity / "adapter_model.safetensors").read_bytes()

    # a rule file edited by hand since: that state becomes a version before the next change
    text = defect.read_text(encoding="utf-8")
    at = text.index('id = "missing-screw"')
    defect.write_text(text[:at] + text[at:].replace("threshold = 0.7", "threshold = 0.75", 1), encoding="utf-8")
    assert release(site, capsys, "apply", "--threshold", "solder-bridge=0.65")[0] == 0
    newest = json.loads(release(site, capsys, "list", "--json")[1])[:2]
    assert [(v["action"], v["changes"]) for v in newest] == [
        ("apply", ["solder-bridge: threshold 0.7 -> 0.65"]),
        ("baseline", ["changed outside streamwatch release", "missing-screw: threshold 0.7 -> 0.75"]),
    ]

    for args, says in (
        (("apply", "--threshold", "no-such-rule=0.5"), "no such rule"),
        (("apply", "--threshold", "solder-bridge=high"), "give RULE=VALUE"),
        (("apply",), "nothing to apply"),
        (("apply", "--adapter", str(site.parent)), "no adapter_config.json"),
        (("apply", "--threshold", "solder-bridge=0.65"), "nothing changes"),
        (("apply", "--adapter", str(identity)), "nothing changes"),
        (("rollback", "99"), "no version 99"),
    ):
        code, _out, err = release(site, capsys, *args)
        assert code == 2 and says in err and "Traceback" not in err, (args, err)


def test_a_rule_with_too_few_examples_blocks_an_adapter_change_and_says_what_to_label(
    site: Path, adapters: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The fine-tune that made foreign-object open on scratched housings: its only examples were 'no'."""
    defect = site.parent / "rules" / "defect.toml"
    shipped = (REPO / "rules" / "defect.toml").read_text(encoding="utf-8")
    foreign = shipped[shipped.index('[[rules]]\nid = "foreign-object"') :]
    defect.write_text(defect.read_text(encoding="utf-8") + "\n" + foreign, encoding="utf-8")
    database = Database.open(f"sqlite:///{site.parent / 'data' / 'streamwatch.db'}")
    snapshots = site.parent / "data" / "snapshots"
    label(LabelStore(database, snapshots, max_pending=999, max_labelled=999), "foreign-object", ["no"] * 4, 9)
    database.close()
    code, out, err = release(site, capsys, "apply", "--adapter", str(adapters[0]))
    assert code == 1, out + err
    assert (
        "refused: foreign-object: too few examples to judge (0 yes, 4 no): label 5 more truly-yes and 1 more "
        "truly-no" in err
    )
    assert slot_weights(site) is None  # nothing applied


def test_an_adapter_is_judged_on_the_examples_it_was_not_trained_on(
    site: Path, adapters: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Judged on its own training examples an adapter looks better than it will do: those its fine-tune
    listed (trained.json) are left out, for the live model too; a rule left with too few is refused."""
    import shutil

    from streamwatch.learning.evaluation.examples import TRAINED, Example, example_key

    candidate = tmp_path / "trained-adapter"
    shutil.copytree(adapters[0], candidate)
    image = Image.new("RGB", (8, 8))
    keys = [example_key(Example("line", "solder-bridge", True, "label", f"solder-bridge-{i}", image)) for i in range(9)]
    (candidate / TRAINED).write_text(json.dumps({"examples": keys}), encoding="utf-8")
    code, out, err = release(site, capsys, "apply", "--adapter", str(candidate), "--out", str(tmp_path / "gate"))
    assert code == 1, out + err
    assert "refused: solder-bridge: too few examples to judge (1 yes, 2 no): label 4 more truly-yes and 3 more" in err
    assert "gate: missing-screw (6 yes, 6 no): ok, coarse" in out  # the others: all their examples
    notes = json.loads((tmp_path / "gate" / "gate.json").read_text())["notes"]
    assert notes == ["rule solder-bridge: the candidate adapter was trained on it (judged on the others): 9"]
    (candidate / TRAINED).write_text("[", encoding="utf-8")
    code, _out, err = release(site, capsys, "apply", "--adapter", str(candidate))
    assert code == 2 and f"{TRAINED} is not readable" in err
