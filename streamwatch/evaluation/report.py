"""The evaluation as numbers per rule x camera (JSON), a Markdown table and a precision-recall plot."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamwatch.bench.report import markdown_table, write_report
from streamwatch.evaluation import metrics
from streamwatch.evaluation.replay import Scored

log = logging.getLogger(__name__)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def row(scored: Scored, target_precision: float | None) -> dict[str, Any]:
    rule, p, truth = scored.rule, scored.p_yes, scored.truth
    now = metrics.counts(p, truth, rule.threshold)
    best = metrics.best_threshold(p, truth, rule.threshold, target_precision)
    at_best = metrics.counts(p, truth, best) if best is not None else None
    n, m = rule.confirm.n, rule.confirm.m

    def per_day(counted: metrics.Counts | None) -> float | None:
        rate = counted.false_positive_rate if counted is not None else None
        return _round(metrics.false_alerts_per_day(rate, scored.sample_interval_s, n, m), 2)

    return {
        "camera": scored.camera,
        "rule": rule.id,
        "n": len(p),
        "positives": sum(truth),
        "sources": dict(scored.sources),
        "threshold": rule.threshold,
        "tp": now.tp,
        "fp": now.fp,
        "fn": now.fn,
        "tn": now.tn,
        "precision": _round(now.precision),
        "recall": _round(now.recall),
        "f1": _round(now.f1),
        "calibration_error": _round(metrics.calibration_error(p, truth)),
        "false_alerts_per_day": per_day(now),
        "suggested_threshold": _round(best),
        "suggested_precision": _round(at_best.precision) if at_best else None,
        "suggested_recall": _round(at_best.recall) if at_best else None,
        "suggested_f1": _round(at_best.f1) if at_best else None,
        "suggested_false_alerts_per_day": per_day(at_best),
        "curve": _curve(p, truth),
    }


def _curve(p: list[float], truth: list[bool]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) at every score, for the plot."""
    points = []
    for threshold in sorted(set(p)):
        counted = metrics.counts(p, truth, threshold)
        if counted.precision is not None and counted.recall is not None:
            points.append((round(threshold, 4), round(counted.precision, 4), round(counted.recall, 4)))
    return points


def write(
    out_dir: Path,
    name: str,
    scored: Mapping[tuple[str, str], Scored],
    skipped: Counter[str],
    about: dict[str, Any],
    target_precision: float | None,
) -> list[Path]:
    rows = [row(scored[key], target_precision) for key in sorted(scored)]
    data = {"evaluation": about, "target_precision": target_precision, "rules": rows, "skipped": dict(skipped)}
    paths = write_report(out_dir, name, data, markdown(rows, skipped, about, target_precision))
    try:
        paths.append(plot(rows, out_dir / f"{name}.png"))
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
    return paths


def markdown(
    rows: list[dict[str, Any]], skipped: Counter[str], about: dict[str, Any], target_precision: float | None
) -> str:
    columns = [
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
        ("suggested_threshold", "suggested threshold"),
        ("suggested_precision", "precision there"),
        ("suggested_recall", "recall there"),
        ("suggested_false_alerts_per_day", "false alerts/day there"),
    ]
    goal = f"the lowest reaching precision {target_precision:g}" if target_precision else "the best F1"
    left_out = "\n".join(f"- {why}: {count}" for why, count in sorted(skipped.items())) or "- none"
    return f"""# Evaluation of {about["model"]}

Rules from `{about["rules"]}`; {about["examples"]} labelled examples ({about["sources"]}); {about["date"]}.
A rule alerts on an answer when P(yes) >= its threshold. Suggested threshold: {goal}. False alerts a
day: on a camera where the condition never holds, sampled at the rule's interval, with its N-of-M
confirmation (answers taken as independent; cooldowns make it fewer).

{markdown_table(rows, columns)}

Left out:
{left_out}
"""


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for index, item in enumerate(rows):
        curve = item["curve"]
        if not curve:
            continue
        axis.plot(
            [c[2] for c in curve],
            [c[1] for c in curve],
            color=f"C{index % 10}",
            label=f"{item['rule']} ({item['camera']})",
        )
        if item["recall"] is not None and item["precision"] is not None:
            axis.plot([item["recall"]], [item["precision"]], marker="o", color=f"C{index % 10}")
    axis.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="precision-recall per rule (dot: threshold)",
    )
    axis.grid(alpha=0.3)
    if rows:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
