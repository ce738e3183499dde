"""The evaluation as numbers per rule x camera (JSON), a Markdown table and a precision-recall plot."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamwatch.learning.evaluation import scores as metrics
from streamwatch.learning.evaluation.false_alerts import false_alerts
from streamwatch.learning.evaluation.replay import Scored
from streamwatch.learning.evaluation.thresholds import suggest
from streamwatch.reports import markdown_table, write_report

log = logging.getLogger(__name__)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def row(scored: Scored, target_precision: float | None) -> dict[str, Any]:
    rule, p, truth = scored.rule, scored.p_yes, scored.truth
    now = metrics.counts(p, truth, scored.threshold)
    tunable = rule.answer == "yes_no"  # count and choice rules alert on a condition, not a threshold
    suggestion = suggest(p, truth, rule.threshold, target_precision) if tunable else None
    best = suggestion.threshold if suggestion is not None else None
    at_best = metrics.counts(p, truth, best) if best is not None else None
    n, m = rule.confirm.n, rule.confirm.m

    def alerts(counted: metrics.Counts | None) -> tuple[float | None, float | None]:
        """(false alerts opened a day, share of the time one is open) at the rule's settings."""
        rate = counted.false_positive_rate if counted is not None else None
        if rate is None:
            return None, None
        found = false_alerts(rate, scored.sample_interval_s, n, m, rule.cooldown_s)
        return _round(found.openings_per_day, 2), _round(found.open_share, 4)

    false_now, false_there = alerts(now), alerts(at_best)

    return {
        "camera": scored.camera,
        "rule": rule.id,
        "mode": rule.mode,
        "shadows": rule.shadows,
        "n": len(p),
        "positives": sum(truth),
        "sources": dict(scored.sources),
        "answer": rule.answer,
        "threshold": rule.threshold if tunable else None,
        "tp": now.tp,
        "fp": now.fp,
        "fn": now.fn,
        "tn": now.tn,
        "precision": _round(now.precision),
        "recall": _round(now.recall),
        "f1": _round(now.f1),
        "calibration_error": _round(metrics.calibration_error(p, truth)) if tunable else None,
        "false_alerts_per_day": false_now[0],
        "false_alert_open_share": false_now[1],
        "suggested_threshold": best,  # exact: rounded, 0.9999996 would read 1.0 and alert on nothing below it
        "suggested_why": suggestion.why if suggestion is not None else None,
        "suggested_cv_precision": _round(suggestion.cv_precision) if suggestion else None,
        "suggested_cv_recall": _round(suggestion.cv_recall) if suggestion else None,
        "suggested_precision": _round(at_best.precision) if at_best else None,
        "suggested_recall": _round(at_best.recall) if at_best else None,
        "suggested_f1": _round(at_best.f1) if at_best else None,
        "suggested_false_alerts_per_day": false_there[0],
        "suggested_false_alert_open_share": false_there[1],
        "curve": _curve(p, truth) if tunable else [],
    }


def _curve(p: list[float], truth: list[bool]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) at every score, for the plot."""
    points = []
    for threshold in sorted(set(p)):
        counted = metrics.counts(p, truth, threshold)
        if counted.precision is not None and counted.recall is not None:
            points.append((round(threshold, 4), round(counted.precision, 4), round(counted.recall, 4)))
    return points


def summarise(
    results: Sequence[tuple[Any, Mapping[tuple[str, str], Scored], Counter[str]]], target_precision: float | None
) -> list[dict[str, Any]]:
    """`results`: (what was evaluated, its scores, why examples were left out) for one candidate, or two
    compared side by side (the second is the change under test); each becomes its figures per rule x
    camera (`rows`) and where its examples came from."""
    candidates = []
    for candidate, scored, skipped in results:
        rows = [row(scored[key], target_precision) for key in sorted(scored)]
        total = sum(item["n"] for item in rows)
        kinds: Counter[str] = Counter()
        for item in rows:
            kinds.update(item["sources"])
        candidates.append(
            {
                "model": candidate.model,
                "adapter": getattr(candidate, "adapter", None),
                "rules": str(candidate.rules),
                "examples": total,
                "sources": dict(kinds),
                "rows": rows,
                "shadow_pairs": shadow_pairs(rows),
                "skipped": dict(skipped),
            }
        )
    return candidates


def shadow_pairs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each shadow rule beside its live rule on the same camera and the same labelled frames."""
    by_key = {(row["camera"], row["rule"]): row for row in rows}
    pairs = []
    for shadow in rows:
        live = by_key.get((shadow["camera"], shadow["shadows"])) if shadow["shadows"] else None
        if live is None:
            continue
        pair = {"camera": shadow["camera"], "live": live["rule"], "shadow": shadow["rule"], "n": shadow["n"]}
        for name in ("f1", "precision", "recall", "false_alerts_per_day", "false_alert_open_share"):
            pair[f"{name}_live"], pair[f"{name}_shadow"] = live[name], shadow[name]
        pairs.append(pair)
    return pairs


PAIRED = [
    ("camera", "camera"),
    ("live", "live rule"),
    ("shadow", "shadow rule"),
    ("n", "examples"),
    ("f1_live", "F1 live"),
    ("f1_shadow", "F1 shadow"),
    ("precision_live", "precision live"),
    ("precision_shadow", "precision shadow"),
    ("recall_live", "recall live"),
    ("recall_shadow", "recall shadow"),
    ("false_alerts_per_day_live", "false alerts/day live"),
    ("false_alerts_per_day_shadow", "false alerts/day shadow"),
    ("false_alert_open_share_live", "false alert open live"),
    ("false_alert_open_share_shadow", "false alert open shadow"),
]

AGREED = [
    ("camera", "camera"),
    ("rule", "shadow rule"),
    ("shadows", "live rule"),
    ("decisions", "decisions"),
    ("paired", "on the live rule's frames"),
    ("both", "both alerting"),
    ("live_only", "only live"),
    ("shadow_only", "only shadow"),
    ("neither", "neither"),
    ("first", "from"),
    ("last", "to"),
]


def _paired(pairs: list[dict[str, Any]]) -> list[str]:
    if not pairs:
        return []
    return ["Shadow rules on their live rule's labelled frames:", "", markdown_table(pairs, PAIRED), ""]


def agreement_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The running service's record of its shadow rules (store/shadow.py), as Markdown lines."""
    return [
        "## Shadow rules in the running service",
        "",
        "Every decision a shadow rule made, against the live rule's answer on the same frame (a frame where",
        "they differ became a label request of the live rule: label those to see which one was right).",
        "",
        markdown_table([dict(row) for row in rows], AGREED),
    ]


def write(
    out_dir: Path,
    name: str,
    candidates: list[dict[str, Any]],
    target_precision: float | None,
    extra: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """NAME.json, NAME.md and the precision-recall plot NAME.png of summarised candidates; `extra` goes
    into the JSON as it is, `notes` (Markdown lines) under the Markdown's introduction."""
    data = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "target_precision": target_precision,
        "candidates": candidates,
        **(extra or {}),
    }
    paths = write_report(out_dir, name, data, markdown(data, notes))
    try:
        paths.append(plot(candidates, out_dir / f"{name}.png"))
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
    return paths


COLUMNS = [
    ("camera", "camera"),
    ("rule", "rule"),
    ("n", "examples"),
    ("positives", "truly yes"),
    ("threshold", "threshold"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("calibration_error", "ECE"),
    ("false_alerts_per_day", "false alerts/day"),
    ("false_alert_open_share", "false alert open"),
    ("suggested_threshold", "suggested threshold"),
    ("suggested_precision", "precision there"),
    ("suggested_recall", "recall there"),
    ("suggested_false_alerts_per_day", "false alerts/day there"),
    ("suggested_false_alert_open_share", "false alert open there"),
    ("suggested_why", "how sure"),
]


def markdown(data: dict[str, Any], notes: Sequence[str] = ()) -> str:
    target = data["target_precision"]
    goal = f"the lowest reaching precision {target:g}" if target else "the best F1"
    parts = [
        "# Evaluation",
        "",
        f"{data['date']}. A rule alerts on an answer when P(yes) >= its threshold. Suggested threshold: {goal}",
        "that still holds with every answer moved by e (2.7x) in odds, from at least 5 truly-yes and 5 truly-no",
        "examples; how sure: the same choice cross-validated (chosen without a fold, counted on it).",
        "False alerts, on a camera where the condition never holds: opened a day, and the share of the time",
        "one is open, from the alert state machine at the rule's interval (N-of-M to open, m negatives in a",
        "row to resolve, then its cooldown), the answers taken as independent.",
        *(["", *notes] if notes else []),
    ]
    for index, candidate in enumerate(data["candidates"]):
        sources = ", ".join(f"{n} from {kind}" for kind, n in sorted(candidate["sources"].items()))
        left_out = "\n".join(f"- {why}: {n}" for why, n in sorted(candidate["skipped"].items())) or "- none"
        parts += [
            "",
            f"## {'ABCDEFGH'[index]}: {_name(candidate)} with rules from `{candidate['rules']}`",
            "",
            f"{candidate['examples']} labelled examples ({sources}).",
            "",
            markdown_table(candidate["rows"], COLUMNS),
            "",
            *(
                [
                    "Shadow rules on their live rule's labelled frames:",
                    "",
                    markdown_table(candidate["shadow_pairs"], PAIRED),
                    "",
                ]
                if candidate.get("shadow_pairs")
                else []
            ),
            "Left out:",
            left_out,
        ]
    if len(data["candidates"]) == 2:
        parts += ["", "## A against B", "", markdown_table(comparison(*data["candidates"]), COMPARED)]
    return "\n".join(parts) + "\n"


def _name(candidate: dict[str, Any]) -> str:
    adapter = candidate.get("adapter")
    return str(candidate["model"]) + (f" + adapter `{adapter}`" if adapter else "")


COMPARED = [
    ("camera", "camera"),
    ("rule", "rule"),
    ("n", "examples"),
    ("f1_a", "F1 A"),
    ("f1_b", "F1 B"),
    ("f1_change", "F1 B - A"),
    ("precision_a", "precision A"),
    ("precision_b", "precision B"),
    ("recall_a", "recall A"),
    ("recall_b", "recall B"),
]


def comparison(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    theirs = {(r["camera"], r["rule"]): r for r in b["rows"]}
    rows = []
    for mine in a["rows"]:
        other = theirs.get((mine["camera"], mine["rule"]))
        if other is None:
            continue
        change = None if mine["f1"] is None or other["f1"] is None else round(other["f1"] - mine["f1"], 3)
        rows.append(
            {
                "camera": mine["camera"],
                "rule": mine["rule"],
                "n": mine["n"],
                "f1_a": mine["f1"],
                "f1_b": other["f1"],
                "f1_change": change,
                "precision_a": mine["precision"],
                "precision_b": other["precision"],
                "recall_a": mine["recall"],
                "recall_b": other["recall"],
            }
        )
    return rows


def plot(candidates: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for number, candidate in enumerate(candidates):
        style = "-" if number == 0 else "--"
        for index, item in enumerate(candidate["rows"]):
            curve = item["curve"]
            colour = f"C{index % 10}"
            label = f"{item['rule']} ({item['camera']}){' ' + 'AB'[number] if len(candidates) > 1 else ''}"
            if curve:
                axis.plot([c[2] for c in curve], [c[1] for c in curve], color=colour, linestyle=style, label=label)
            if item["recall"] is not None and item["precision"] is not None:  # count/choice rules: the dot alone
                axis.plot(
                    [item["recall"]], [item["precision"]], marker="o", color=colour, label=None if curve else label
                )
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    axis.set_title("precision-recall per rule (dot: its threshold)")
    axis.grid(alpha=0.3)
    if any(candidate["rows"] for candidate in candidates):
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
