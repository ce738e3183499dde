"""Rule files: shipped templates load; malformed ones are rejected with file:line: field errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support.helpers import REPO

from streamwatch.config import CameraConfig
from streamwatch.errors import DataFileError
from streamwatch.inference.limits import offline_limits
from streamwatch.rules.loader import load_rule_file, load_rules
from streamwatch.rules.model import Rule, within_hours

YARD = CameraConfig(id="yard", url="a.mp4", tags=["perimeter"], location="the north yard", vars={"door": "D4"})
DOCK = CameraConfig(id="dock-2", url="b.mp4", tags=["warehouse"])


def test_shipped_rules_cover_three_domains() -> None:
    rules = load_rules(REPO / "rules", [YARD, DOCK])
    by_file = {path.stem: items for path, items in rules.files.items()}
    assert set(by_file) == {"perimeter", "defect", "warehouse"}
    for items in by_file.values():
        assert len(items) >= 6
        assert all(r.title and r.help and r.severity in ("info", "warning", "critical") for r in items)
    questions = [r.render(YARD) for r in rules.for_camera(YARD)]
    assert any("the north yard" in q for q in questions)


def rule_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


BASE = '[[rules]]\nid = "r1"\ntitle = "T"\nquestion = "Is a person at {location}? Answer yes or no."\n'
MALFORMED = [
    (BASE + "threshold = 1.5\n", ":5: rules[0].threshold: Input should be less than or equal to 1"),
    (BASE + 'answer = "maybe"\n', ":5: rules[0].answer: Input should be 'yes_no', 'count', 'choice' or 'text'"),
    (BASE + 'severity = "urgent"\n', ":5: rules[0].severity: Input should be 'info', 'warning' or 'critical'"),
    (BASE + "colour = 1\n", ":5: rules[0].colour: unknown key"),
    ('[[rules]]\nid = "r1"\ntitle = "T"\n', ":1: rules[0].question: required key is missing"),
    (BASE.replace("{location}", "{gate}"), ":4: rules[0].question: unknown template variable {gate} for camera 'yard'"),
    (BASE.replace("{location}", "{location.name}"), ":4: rules[0].question: template variable {location.name} must"),
    (BASE.replace("{location}", "{location"), ":4: rules[0].question: bad template"),
    (BASE + 'answer = "count"\n', ":1: rules[0]: count rules need alert_when like '>= 3'"),
    (BASE + 'answer = "count"\nalert_when = "lots"\n', ":1: rules[0]: count rules need alert_when"),
    (
        BASE + 'answer = "choice"\nchoices = ["a", "b"]\nalert_when = ["c"]\n',
        ":1: rules[0]: choice rules need alert_when",
    ),
    (BASE + 'answer = "choice"\nchoices = ["a"]\nalert_when = "a"\n', ":1: rules[0]: choice rules need at least two"),
    (BASE + 'alert_when = ">= 2"\n', ":1: rules[0]: alert_when is not used by yes_no rules"),
    (BASE + "confirm = { n = 3, m = 2 }\n", ":5: rules[0].confirm: n (3) must not exceed m (2)"),
    (BASE + "roi = [0.5, 0.0, 0.4, 1.0]\n", ":5: rules[0].roi: expected [x0, y0, x1, y1]"),
    (BASE + "roi = [0.0, 0.0, 1.0]\n", ":5: rules[0].roi"),
    (BASE + 'active_hours = "25:00-06:00"\n', ":5: rules[0].active_hours: expected HH:MM-HH:MM"),
    (BASE + 'schedule = "every day"\n', ":5: rules[0].schedule: not a cron expression"),
    (BASE + "cooldown_s = -1\n", ":5: rules[0].cooldown_s: Input should be greater than or equal to 0"),
    (BASE + 'id = "r2"\n', "TOML syntax error"),
    (BASE + BASE, ":6: rules[1].id: rule id 'r1' is used twice in this file"),
    (BASE.replace('id = "r1"', 'id = "Fence Climb"'), ":2: rules[0].id: expected lowercase letters"),
    ('[[rule]]\nid = "x"\n', ":1: rule: unknown key"),
    (BASE + 'describe = "Who is at {nowhere}?"\n', ":4: rules[0].question: unknown template variable {nowhere}"),
    # blank text
    (BASE.replace('title = "T"', 'title = "   "'), ":3: rules[0].title: must not be blank"),
    (
        BASE.replace('question = "Is a person at {location}? Answer yes or no."', 'question = " \\t "'),
        ":4: rules[0].question: must not be blank",
    ),
    (BASE + 'describe = "\\n"\n', ":5: rules[0].describe: must not be blank"),
    (BASE.replace('title = "T"', f'title = "{"T" * 201}"'), ":3: rules[0].title: String should have at most 200"),
    (
        BASE + 'answer = "choice"\nchoices = ["full", " "]\nalert_when = "full"\n',
        ":1: rules[0]: choices must be different words, none blank",
    ),
    (
        BASE + 'answer = "choice"\nchoices = ["full", "Full "]\nalert_when = "full"\n',
        ":1: rules[0]: choices must be different words",
    ),
    (
        BASE + "sample_interval_s = 0.001\n",
        ":5: rules[0].sample_interval_s: Input should be greater than or equal to 0.1",
    ),
    # rules over time
    (BASE + 'on = "change"\n', ':1: rules[0]: on = "change" needs a count or choice rule'),
    (BASE + 'answer = "count"\non = "change"\nalert_when = ">= 2"\n', ":1: rules[0]: alert_when is not used with on"),
    (BASE + 'answer = "count"\non = "change"\nfor_s = 60\n', ':1: rules[0]: for_s is not used with on = "change"'),
    (BASE + "min_delta = 2\n", ':1: rules[0]: min_delta is used only with on = "change"'),
    (
        BASE + 'answer = "choice"\nchoices = ["a", "b"]\non = "change"\nmin_delta = 2\n',
        ":1: rules[0]: min_delta is for count rules",
    ),
    (BASE + 'answer = "text"\nfor_s = 60\n', ":1: rules[0]: text answers meet no condition"),
    (BASE + 'answer = "text"\non = "rising"\n', ":1: rules[0]: text answers meet no condition"),
    (BASE + "for_s = -5\n", ":5: rules[0].for_s: Input should be greater than or equal to 0"),
    (BASE + 'on = "sometimes"\n', ":5: rules[0].on: Input should be 'condition', 'rising' or 'change'"),
    (BASE + 'answer = "count"\non = "change"\nmin_delta = 0\n', ":7: rules[0].min_delta: Input should be greater"),
    # questions over several frames
    (BASE + "frames = 4\n", ":1: rules[0]: frames = 4 needs span_s: the seconds from the oldest frame to the newest"),
    (BASE + "span_s = 6\n", ":1: rules[0]: span_s is used only with frames > 1"),
    (BASE + "frames = 9\nspan_s = 6\n", ":5: rules[0].frames: Input should be less than or equal to 8"),
    (BASE + "frames = 0\n", ":5: rules[0].frames: Input should be greater than or equal to 1"),
    (BASE + "frames = 3\nspan_s = 0\n", ":6: rules[0].span_s: Input should be greater than 0"),
    (BASE + "frames = 2\nspan_s = 3600\n", ":6: rules[0].span_s: Input should be less than or equal to 600"),
    (BASE + 'frames = "four"\nspan_s = 6\n', ":5: rules[0].frames: Input should be a valid integer"),
    # schedules that never run
    (BASE + 'schedule = "0 0 31 2 *"\n', ":5: rules[0].schedule: this schedule never fires"),
    (BASE + 'schedule = "30 6 30 2 *"\n', ":5: rules[0].schedule: this schedule never fires"),
    (BASE + 'schedule = "0 0 31 4,6,9,11 *"\n', ":5: rules[0].schedule: this schedule never fires"),
    (BASE + 'active_hours = "06:00-06:00"\n', ":5: rules[0].active_hours: the window starts and ends at the same"),
    (BASE + 'active_hours = "23:59-23:59"\n', ":5: rules[0].active_hours: the window starts and ends at the same"),
    # questions past the length bound, also once the camera's variables are filled in
    (
        BASE.replace("Is a person at {location}?", "Is a person at " + "x" * 2000 + "?"),
        ":4: rules[0].question: the question is 2034 characters long; at most 2000",
    ),
    (BASE + f'describe = "{"Describe it. " * 200}"\n', ":5: rules[0].describe: the question is 2600 characters long"),
    (
        BASE.replace("{location}", "{door}" * 1001),
        ":4: rules[0].question: the question is 2036 characters long; at "
        "most 2000 (model.max_question_chars) (for camera 'yard')",
    ),
    # the file itself
    (
        "[[rules]]\nid = 'r1'\ncameras = " + "[" * 30 + "]" * 30 + "\n",
        ":3: arrays or inline tables are nested more than 16 deep",
    ),
    ("[" + ".".join(["rules"] * 30) + "]\n", ":1: a dotted key or table name has more than 16 parts"),
]


@pytest.mark.parametrize(("body", "expected"), MALFORMED)
def test_malformed_rule_files(tmp_path: Path, body: str, expected: str) -> None:
    path = rule_file(tmp_path, body)
    with pytest.raises(DataFileError) as info:
        load_rule_file(path, [YARD])
    assert any(p.startswith(str(path)) and expected in p for p in info.value.problems), info.value.problems


def test_a_broken_file_does_not_hide_problems_in_others(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(BASE + "threshold = 2\n")
    (tmp_path / "b.toml").write_text(BASE.replace("r1", "r2") + 'severity = "huge"\n')
    (tmp_path / "c.toml").write_text(BASE)
    with pytest.raises(DataFileError) as info:
        load_rules(tmp_path, [YARD])
    found = info.value.problems
    assert len(found) == 2 and "a.toml:5" in found[0] and "b.toml:5" in found[1]


def test_rule_ids_are_unique_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(BASE)
    (tmp_path / "b.toml").write_text("# the same rule again\n" + BASE)
    with pytest.raises(DataFileError) as info:
        load_rules(tmp_path, [YARD])
    assert info.value.problems == [
        f"{tmp_path / 'b.toml'}:3: rules: rule id 'r1' is also defined in {tmp_path / 'a.toml'}"
    ]


def test_a_rules_file_holds_at_most_1000_rules_and_a_folder_256_files(tmp_path: Path) -> None:
    many = "".join(BASE.replace('"r1"', f'"r{index}"') for index in range(1001))
    path = rule_file(tmp_path, many)
    with pytest.raises(DataFileError, match=r"r.toml:1: rules: 1001 rules; at most 1000"):
        load_rule_file(path, [YARD])
    folder = tmp_path / "rules"
    folder.mkdir()
    for index in range(257):
        (folder / f"f{index:03}.toml").write_text("")
    with pytest.raises(DataFileError, match="257 rule files; at most 256"):
        load_rules(folder, [YARD])


def test_every_shipped_choice_fits_its_token_budget_for_the_demo_model() -> None:
    """shelf-fill once had max_new_tokens = 4, so 'partial' (5 tokens with its answer box) came back as 'part'."""
    limits, note = offline_limits(
        str(REPO / "models" / "demo-glm4v"), max_chars=2000, max_tokens=512, max_image_side=640, max_new_tokens=16
    )
    assert note is None and limits.count_answer is not None
    rules = load_rules(REPO / "rules", [YARD, DOCK], limits)  # raises if any choice would be cut off
    choice_rules = [r for r in rules.rules if r.answer == "choice"]
    assert choice_rules and all(
        limits.answer_problem(c, r.max_new_tokens) is None for r in choice_rules for c in r.choices
    )
    cut = rules.rules[0].model_copy(update={"answer": "choice", "choices": ["empty", "partial"], "max_new_tokens": 4})
    assert "'partial' takes 5 tokens" in str(limits.answer_problem("partial", cut.max_new_tokens))


def test_questions_are_bounded_in_the_models_tokens(tiny_glm4v: Path, tmp_path: Path) -> None:
    limits, _note = offline_limits(
        str(tiny_glm4v), max_chars=100_000, max_tokens=64, max_image_side=640, max_new_tokens=16
    )
    path = rule_file(tmp_path, BASE.replace("Is a person at {location}?", "Is a person " + "near the gate " * 40 + "?"))
    with pytest.raises(
        DataFileError,
        match=r"r.toml:4: rules\[0\].question: the question is \d+ tokens long; at most "
        r"64 for .*tiny-glm4v",
    ):
        load_rule_file(path, [YARD], limits)
    assert limits.problem("Is a person at the gate? Answer yes or no.") is None


def test_questions_over_several_frames_fit_the_models_context(tiny_glm4v: Path, tmp_path: Path) -> None:
    """At 1792 px an image is 4096 tokens of the tiny GLM-4V; its context is 32768: 8 frames cannot fit, and
    beside 7 a question has only ~4000 tokens left."""
    limits, _note = offline_limits(
        str(tiny_glm4v), max_chars=100_000, max_tokens=100_000, max_image_side=1792, max_new_tokens=16
    )
    eight = rule_file(tmp_path, BASE + "frames = 8\nspan_s = 7\n")
    with pytest.raises(DataFileError, match=r"r.toml:5: rules\[0\].frames: 8 images of up to 4096 tokens each"):
        load_rule_file(eight, [YARD], limits)
    long = "Is a person " + "near the gate " * 1500 + "?"
    assert limits.problem(long) is None and "beside 7 images" in str(limits.problem(long, images=7))
    seven = rule_file(tmp_path, BASE.replace("Is a person at {location}?", long) + "frames = 7\nspan_s = 6\n")
    with pytest.raises(
        DataFileError, match=r"r.toml:4: rules\[0\].question: the question is \d+ tokens long; at most "
    ):
        load_rule_file(seven, [YARD], limits)
    four = rule_file(tmp_path, BASE + "frames = 4\nspan_s = 6\n")
    (rule,) = load_rule_file(four, [YARD], limits).rules
    assert rule.spacing_s == 2.0 and rule.prompt(YARD).startswith("The 4 images are frames from the same camera")


def test_camera_selection_by_id_glob_and_tag() -> None:
    def make(cams: list[str]) -> Rule:
        return Rule(id="r", title="t", question="q", cameras=cams)

    assert make(["yard"]).applies_to(YARD) and not make(["yard"]).applies_to(DOCK)
    assert make(["dock-*"]).applies_to(DOCK)
    assert make(["tag:warehouse"]).applies_to(DOCK) and not make(["tag:warehouse"]).applies_to(YARD)
    assert make(["*"]).applies_to(YARD)


def test_templates_use_camera_variables() -> None:
    rule = Rule(id="r", title="t", question="Is door {door} at {location} ({camera}, {zone}) open? {{yes}}")
    assert rule.render(YARD) == "Is door D4 at the north yard (yard, the monitored area) open? {yes}"


@pytest.mark.parametrize(
    ("fields", "text", "p_yes", "alert"),
    [
        ({"threshold": 0.7}, "yes", 0.71, True),
        ({"threshold": 0.7}, "yes", 0.69, False),
        ({"answer": "count", "alert_when": ">= 3"}, "There are 3 people.", None, True),
        ({"answer": "count", "alert_when": ">= 3"}, "2", None, False),
        ({"answer": "count", "alert_when": "== 0"}, "none", None, False),
        ({"answer": "choice", "choices": ["empty", "full"], "alert_when": ["empty"]}, "Empty.", None, True),
        ({"answer": "choice", "choices": ["empty", "full"], "alert_when": "empty"}, "full", None, False),
        ({"answer": "text"}, "a person", None, False),
    ],
)
def test_alert_conditions(fields: dict[str, object], text: str, p_yes: float | None, alert: bool) -> None:
    rule = Rule.model_validate({"id": "r", "title": "t", "question": "q", **fields})
    assert rule.is_alert(text, p_yes) is alert


def test_active_hours_wrap_past_midnight() -> None:
    assert within_hours("22:00-06:00", 23 * 60) and within_hours("22:00-06:00", 5 * 60)
    assert not within_hours("22:00-06:00", 12 * 60)
    assert within_hours("08:00-17:30", 17 * 60 + 29) and not within_hours("08:00-17:30", 17 * 60 + 30)
    assert within_hours(None, 0)
