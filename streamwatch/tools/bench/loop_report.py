"""The learning-loop bench's report: per seed, the held-out boards before and after the loop (the
threshold and adapter the release gate let through), the gate's outcomes, and over the seeds the mean
and the worst case against the targets; the unjudged run's refusal and what overriding it did."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean
from typing import Any

from streamwatch.reports import markdown_table

TARGET_FALSE_ALERTS = 0.01  # worst case over the seeds, on good boards, after the loop
TARGET_RECALL = 0.95  # worst case over the seeds, on bridged boards, after the loop
TARGET_OTHER_RISE = 0.005  # another rule's false-alert rate may rise at most this


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {}
    found: dict[str, Any] = {"seeds": [run["seed"] for run in runs]}
    for phase in ("before", "after"):
        rates = [run["phases"][phase]["false_alert_rate"] for run in runs]
        recalls = [run["phases"][phase]["recall"] for run in runs]
        found[phase] = {
            "false_alert_rate_mean": round(mean(rates), 4),
            "false_alert_rate_worst": max(rates),
            "recall_mean": round(mean(recalls), 4),
            "recall_worst": min(recalls),
        }
    after = found["after"]
    found["targets_met"] = after["false_alert_rate_worst"] <= TARGET_FALSE_ALERTS and (
        after["recall_worst"] >= TARGET_RECALL
    )
    return found


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _share(phase: dict[str, Any]) -> str:
    return f"{phase['sampled'] / phase['shown']:.0%}" if phase.get("shown") else "-"


def _gate(gate: dict[str, Any] | None, adapter: bool = False) -> str:
    if gate is None:
        return "not asked (no other threshold suggested)"
    judged = ""
    if adapter:
        unseen = bool(gate.get("unseen"))
        judged = " on the examples it was not trained on" if unseen else " on every example, its training ones too"
    return str(gate["outcome"]) + judged + (f": {'; '.join(gate['refusals'])}" if gate["refusals"] else "")


def markdown(data: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = data["runs"]
    plain = [run for run in runs if run["also_rule"] is None]
    rows = []
    for run in plain:
        before, after = run["phases"]["before"], run["phases"]["after"]
        rows.append(
            {
                "seed": run["seed"],
                "fa_before": f"{before['alerted_good']}/{before['good']} ({_percent(before['false_alert_rate'])})",
                "fa_after": f"{after['alerted_good']}/{after['good']} ({_percent(after['false_alert_rate'])})",
                "recall_before": f"{before['alerted_bridged']}/{before['bridged']} ({_percent(before['recall'])})",
                "recall_after": f"{after['alerted_bridged']}/{after['bridged']} ({_percent(after['recall'])})",
                "labels": f"{run['labelled'].get('yes', 0)} yes, {run['labelled'].get('no', 0)} no",
                "threshold": _gate(run["gates"].get("threshold")),
                "adapter": _gate(run["gates"].get("adapter"), adapter=True),
                "live": run["live_threshold"],
                "sampled": f"{_share(before)}, {_share(after)}",
            }
        )
    columns = [
        ("seed", "seed"),
        ("fa_before", "false alerts on good boards, before"),
        ("fa_after", "after"),
        ("recall_before", "recall on bridged boards, before"),
        ("recall_after", "after"),
        ("labels", "label requests answered"),
        ("threshold", "gate: eval's threshold"),
        ("adapter", "gate: adapter + its threshold"),
        ("live", "threshold live after"),
        ("sampled", "images answered, before, after"),
    ]
    lines = [
        "# The learning loop on the demo model, over seeds",
        "",
        f"{data['machine'].get('cpu', '?')}, {data['machine'].get('cores', '?')} cores (CPU only), {data['date']}. "
        f"`streamwatch bench learning-loop` ({data['minutes']} min). Per seed: `streamwatch run` watches an "
        f"inspection camera (an image folder: each board shown {data['config']['board_frames']} times, then the empty "
        "belt as often; the share of the images the service answered is given) with the shipped "
        "solder-bridge rule; held-out boards pass (never reviewed, never trained on), then training boards; a "
        "scripted operator reviews every alert and answers every label request of the training boards through "
        "the REST API by each board's truth; `streamwatch eval` suggests a threshold and `streamwatch release "
        "apply` takes it through the release gate; `streamwatch model finetune --from-reviews` trains an adapter, "
        "and `streamwatch release apply` takes it (with the threshold its held-out part suggests) through the "
        "gate; the held-out boards pass again. A board counts as alerted when an alert opened on it.",
        "",
        f"Boards: training from numpy `SeedSequence([{data['streams']['training']}, seed])`, held-out from "
        f"`SeedSequence([{data['streams']['held_out']}, seed])`: separate streams, neither the demo model's own "
        f"(`default_rng(0)`). Settings: {data['config']['train_good']} + {data['config']['train_bridged']} "
        f"training and {data['config']['held_good']} + {data['config']['held_bridged']} held-out boards (good + "
        f"bridged), sampled every {data['config']['interval_s']} s, `cooldown_s = 0` (each board its own alert), "
        f"{data['config']['steps']} fine-tuning steps; `[labels]` every_s = {data['labels']['every_s']} (a board "
        f"passes every few tenths of a second), sample_no = {data['labels']['sample_no']}, sample_yes = "
        f"{data['labels']['sample_yes']}, the band and the rest as shipped.",
        "",
        markdown_table(rows, columns),
        "",
    ]
    found = data["summary"]
    if found:
        before, after = found["before"], found["after"]
        lines += [
            f"Over seeds {', '.join(map(str, found['seeds']))}: false alerts on good boards "
            f"{_percent(before['false_alert_rate_mean'])} mean, {_percent(before['false_alert_rate_worst'])} worst "
            f"before -> {_percent(after['false_alert_rate_mean'])} mean, {_percent(after['false_alert_rate_worst'])} "
            f"worst after; recall {_percent(before['recall_mean'])} mean, {_percent(before['recall_worst'])} worst "
            f"before -> {_percent(after['recall_mean'])} mean, {_percent(after['recall_worst'])} worst after. "
            f"Targets (worst case after: false alerts <= {TARGET_FALSE_ALERTS:.0%}, recall >= {TARGET_RECALL:.0%}): "
            f"{'met' if found['targets_met'] else 'NOT met'}.",
            "",
        ]
    for run in runs:
        if run["also_rule"] is None:
            continue
        phases = run["phases"]
        also = {name: phases[name]["also_alerted_good"] for name in phases}
        lines += [
            f"## Seed {run['seed']}: {run['also_rule']} live too, never labelled",
            "",
            f"The same loop with the shipped `{run['also_rule']}` rule (critical) live on the camera; the operator "
            "labels solder joints only, so nothing tells whether an adapter trained on them breaks "
            f"{run['also_rule']}. The gate on the adapter: {_gate(run['gates'].get('adapter'), adapter=True)}.",
            "",
            f"- {run['also_rule']} alerts on good held-out boards: before {also['before']}, after the gate "
            f"{also['after']}"
            + (
                f", and with the refused adapter forced live (`--override`): {also['forced']} "
                f"(solder-bridge then: {phases['forced']['alerted_good']} false alerts on good boards, recall "
                f"{_percent(phases['forced']['recall'])})."
                if "forced" in phases
                else "."
            ),
            "",
        ]
    return "\n".join(lines)
