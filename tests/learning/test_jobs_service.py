"""The learning loop from the running service's REST API and Jobs page: fine-tune on the labels, apply
the adapter (handed to the model without a restart: the adapter folder is not watched here), evaluate
it against the bare model, with the real CLI as the jobs' child processes on the shipped demo model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from support.demo_site import demo_site, label_boards
from support.helpers import CHROMIUM, REPO, free_port, wait_for
from support.service import serving

from streamwatch.config import load_settings
from streamwatch.inference.build import build_backend

JOB_S = 600  # a CPU fine-tune of 20 steps with its two held-out replays, on a busy machine


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    config, _store, labels = demo_site(tmp_path, own_rules=True)  # a release writes thresholds into them
    label_boards(labels, 48, np.random.default_rng(7))
    text = config.read_text(encoding="utf-8")
    text = text.replace("[mqtt]\nenabled = true", "[mqtt]\nenabled = false").replace(
        "port = 8080", f"port = {free_port()}"
    )
    text = text.replace("describe = false\n", "describe = false\nenabled = false\n")  # no camera: only the jobs
    text = text.replace(
        'id = "./models/demo-glm4v"', 'id = "./models/demo-glm4v"\nadapter = "data/adapter"\nwatch_s = 0'
    )
    config.write_text(text, encoding="utf-8")
    (tmp_path / "data" / "adapter").mkdir()  # an empty slot: the model runs alone until one is applied
    settings = load_settings(config)
    with serving(settings, build_backend) as client:
        yield client, tmp_path


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["state"] != "running", JOB_S, f"job {job_id}")
    job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
    return job


@pytest.mark.slow
def test_finetune_apply_and_eval_from_the_rest_api(site: tuple[httpx.Client, Path]) -> None:
    client, folder = site
    assert client.get("/readyz").json()["model"]["adapter"] is None
    started = client.post("/api/jobs", json={"kind": "finetune", "steps": 20})
    assert started.status_code == 202, started.text
    tune = started.json()
    assert tune["state"] == "running" and tune["options"]["steps"] == 20
    busy = client.post("/api/jobs", json={"kind": "eval"})
    assert busy.status_code == 409 and f"job {tune['id']} (finetune) is running" in busy.json()["detail"]
    assert client.get("/api/jobs").json()["running"] == tune["id"]

    tune = finished(client, tune["id"])
    log = client.get(f"/api/jobs/{tune['id']}/files/output.log").text
    assert tune["state"] == "succeeded", log
    assert {"output.log", "adapter/finetune.md", "adapter/finetune.json", "adapter/finetune.png"} <= set(tune["files"])
    assert any(line.startswith("with the adapter, solder-bridge on line: F1") for line in tune["summary"])
    report = client.get(tune["files"]["adapter/finetune.json"]).json()
    assert report["training"]["examples"] > 0 and len(report["candidates"]) == 2

    # Apply: a release job; the gate refuses, since only solder-bridge has labelled examples
    applied = client.post(f"/api/jobs/{tune['id']}/apply", json={"thresholds": {"solder-bridge": 0.6}})
    assert applied.status_code == 202, applied.text
    gated = finished(client, applied.json()["id"])
    assert gated["kind"] == "release" and gated["state"] == "refused", client.get(gated["files"]["output.log"]).text
    assert "the release gate refused it: " in gated["error"] and "fence-climb: cannot be judged" in gated["error"]
    assert "refused: missing-screw: cannot be judged: no labelled example" in "\n".join(gated["summary"])
    assert {"gate.md", "gate.json"} <= set(gated["files"])
    assert client.get("/readyz").json()["model"]["adapter"] is None  # nothing changed
    page = client.get("/jobs").text
    assert f'action="/jobs/{gated["id"]}/override"' in page and "The release gate" in page
    # applied anyway, with a reason (the page's form): recorded, live
    token = client.headers["X-CSRF-Token"]
    forced = client.post(f"/jobs/{gated['id']}/override", data={"csrf": token, "override": "only solder-bridge runs"})
    assert forced.status_code == 303, forced.text
    release_job = client.get("/api/jobs").json()["items"][0]
    assert release_job["options"]["override"] == "only solder-bridge runs"
    assert finished(client, release_job["id"])["state"] == "succeeded"
    assert client.get(f"/api/jobs/{tune['id']}").json()["applied_at"] is not None
    slot = str(folder / "data" / "adapter")
    wait_for(lambda: client.get("/readyz").json()["model"]["adapter"] == slot, 120, "the adapter to be swapped in")
    assert client.get("/readyz").json()["model"]["reloads"] == 1
    releases = client.get("/api/releases").json()
    assert releases["live"] == 3 and [v["outcome"] for v in releases["items"]] == ["overridden", "refused", "not gated"]
    assert (
        releases["items"][0]["job_id"] == tune["id"] and releases["items"][0]["by"] == "an open web UI from 127.0.0.1"
    )
    assert releases["items"][0]["thresholds"]["solder-bridge"] == 0.6

    evaluated = client.post("/api/jobs", json={"kind": "eval", "compare_adapter": "none"})
    assert evaluated.status_code == 202, evaluated.text
    job = finished(client, evaluated.json()["id"])
    assert job["state"] == "succeeded", client.get(job["files"]["output.log"]).text
    candidates = json.loads(client.get(job["files"]["eval.json"]).text)["candidates"]
    assert [c["adapter"] for c in candidates] == [slot, None]
    assert candidates[0]["rows"][0]["n"] == 48
    assert any(line.startswith("saved the figures of 1 rule x camera pairs") for line in job["summary"])
    (rule,) = [r for r in client.get("/api/rules").json() if r["id"] == "solder-bridge"]
    assert [m["camera"] for m in rule["measured"]] == ["line"]

    # the page lists both; refusals name the field or the reason; no path outside a job's folder
    page = client.get("/jobs").text
    assert tune["id"] in page and job["id"] in page and "applied" in page
    assert 'name="steps" type="number" min="1" max="100000" value="400"' in page  # the command's defaults
    assert '<option value="true" selected>yes: shift, scale, mirror, light' in page
    token = client.headers["X-CSRF-Token"]
    form = client.post("/jobs", data={"csrf": token, "kind": "finetune", "steps": "0"})
    assert form.status_code == 422 and "steps: Input should be greater than or equal to 1" in form.text
    refused = client.post(f"/jobs/{job['id']}/apply", data={"csrf": token})
    assert refused.status_code == 422 and "only a finished fine-tune applies" in refused.text
    for body, field in (
        ({"kind": "finetune", "holdout": 1}, "holdout"),
        ({"kind": "finetune", "augment": "sometimes"}, "augment"),
        ({"kind": "eval", "adapter": "../../etc"}, "adapter"),
        ({"kind": "eval", "target_precision": "high"}, "target_precision"),
        ({"kind": "train"}, "kind"),
        ({"kind": "eval", "rules": "/tmp"}, "rules"),
    ):
        answer = client.post("/api/jobs", json=body)
        assert answer.status_code == 422 and field in json.dumps(answer.json()["detail"]), (body, answer.text)
    unknown = client.post("/api/jobs", json={"kind": "eval", "compare_adapter": "20260101-000000-abcd"})
    assert unknown.status_code == 422 and "no finished fine-tune job" in unknown.json()["detail"]
    for path in ("/api/jobs/../config.toml", f"/api/jobs/{job['id']}/files/../../../config.toml", "/api/jobs/x"):
        assert client.get(path).status_code == 404, path
    without = httpx.post(f"{client.base_url}/api/jobs", json={"kind": "eval"})
    assert without.status_code == 403  # no CSRF token: a page on another site cannot start one

    # labelled clips from jobs.clips_dir, by name
    (folder / "labelled-clips").mkdir()
    (folder / "labelled-clips" / "line.toml").write_text(
        'clip = "../samples/line.mp4"\ncamera = "line"\nrule = "solder-bridge"\nevery_s = 4\n'
        '[[intervals]]\nfrom_s = 0\nto_s = 8\ntruth = "no"\n',
        encoding="utf-8",
    )
    assert 'name="clips" value="line.toml"' in client.get("/jobs").text
    for clips, code, why in (
        (["../config.toml"], 422, "clips"),
        (["other.toml"], 422, "clips: no manifest 'other.toml' in"),
    ):
        answer = client.post("/api/jobs", json={"kind": "eval", "clips": clips})
        assert answer.status_code == code and why in json.dumps(answer.json()["detail"]), answer.text
    with_clips = finished(client, client.post("/api/jobs", json={"kind": "eval", "clips": ["line.toml"]}).json()["id"])
    assert with_clips["state"] == "succeeded", client.get(with_clips["files"]["output.log"]).text
    (row,) = json.loads(client.get(with_clips["files"]["eval.json"]).text)["candidates"][0]["rows"]
    assert row["n"] == 48 + 3 and row["sources"] == {"label": 48, str(folder / "labelled-clips" / "line.toml"): 3}

    # a candidate rules folder side by side (its rule's threshold moved)
    shutil.copytree(REPO / "rules", folder / "rules-b")
    defect = folder / "rules-b" / "defect.toml"
    defect.write_text(defect.read_text(encoding="utf-8").replace("threshold = 0.7", "threshold = 0.9", 1), "utf-8")
    compared = client.post("/api/jobs", json={"kind": "eval", "compare_rules": "rules-b"}).json()
    compared = finished(client, compared["id"])
    assert compared["state"] == "succeeded", client.get(compared["files"]["output.log"]).text
    a, b = json.loads(client.get(compared["files"]["eval.json"]).text)["candidates"]
    assert (
        b["rules"] == str(folder / "rules-b") and a["rows"][0]["threshold"] == 0.6 and b["rows"][0]["threshold"] == 0.9
    )
    refused = client.post("/api/jobs", json={"kind": "eval", "compare_model": "--force"})
    assert refused.status_code == 422 and "compare_model" in json.dumps(refused.json()["detail"])

    # a job that fails says why in its own words; the service keeps watching with its model
    failing = client.post("/api/jobs", json={"kind": "finetune", "holdout": 0.95}).json()
    failed = finished(client, failing["id"])
    assert failed["state"] == "failed" and "usable training examples, at least 8 are needed" in failed["error"]
    assert client.get("/readyz").json()["model"]["adapter"] == slot

    # roll back to the state before the first change: live again without a restart
    assert 'action="/releases/1/rollback"' in client.get("/jobs").text
    back = client.post("/api/releases/1/rollback")
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 4 and back.json()["rolled_back_to"] == 1
    assert client.get(f"/api/jobs/{tune['id']}").json()["applied_at"] is None  # its adapter is out again
    wait_for(lambda: client.get("/readyz").json()["model"]["adapter"] is None, 120, "the adapter to be taken out")
    assert "threshold = 0.7" in (folder / "rules" / "defect.toml").read_text(encoding="utf-8")
    never = client.post("/api/releases/2/rollback")
    assert never.status_code == 422 and "never went live" in never.json()["detail"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/install-test-deps.sh)")
def test_an_eval_from_the_jobs_page_in_chromium(site: tuple[httpx.Client, Path], browser: object) -> None:
    client, _folder = site
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{client.base_url}/jobs")
    assert page.locator("#no-jobs").count() == 1 and "without an adapter" in page.locator("#model").inner_text()
    page.select_option("#compare_adapter", "none")
    page.fill("#target_precision", "0.9")
    page.click("#eval-form button")
    assert page.locator("#current h1").inner_text().startswith("Running: eval")  # the page follows it
    page.wait_for_selector("li.card[data-state=succeeded]", timeout=JOB_S * 1000)
    assert page.locator("#current").count() == 0 and page.locator("#eval-form").count() == 1
    card = page.locator("li.card").first
    assert "saved the figures of 1 rule x camera pairs" in card.inner_text()
    card.locator("a", has_text="eval.md").click()
    page.wait_for_url("**/files/eval.md")
    assert "| line | solder-bridge |" in page.locator("body").inner_text()
