"""Notifications through Apprise to real receivers started here: a local HTTP server taking Apprise's
JSON webhook and a local SMTP server (aiosmtpd) taking the mail with the JPEG attached; through the
running service, and through the outbox while a receiver is down for 30 s (all arrive afterwards, in
order); routing, quiet hours, the hourly limit, config errors, and the target's token never shown."""

from __future__ import annotations

import asyncio
import base64
import email
import logging
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.helpers import REPO, free_port, wait_for
from support.notify import TOKEN, Webhook, events_and_target, record
from support.service import Running, write_site

from streamwatch.config import NotifyConfig, load_settings
from streamwatch.errors import DataFileError
from streamwatch.redact import RedactingFormatter, scrub


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    mails: list[Any] = []

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            mails.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mails
    controller.stop()


def test_an_alert_reaches_a_webhook_and_a_mailbox_with_its_snapshot(
    tmp_path: Path, webhook: Webhook, smtp: tuple[int, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    webhook.start()
    port, mails = smtp
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None)
    mail = f"mailto://127.0.0.1:{port}?from=streamwatch@example.com&to=ops@example.com"
    extra = f'[[notify]]\nname = "ops"\nurls = ["{webhook.url}", "{mail}"]\nattach_clip = true\n'
    extra += "wait_for_description_s = 30\n"  # the open alert's notification waits for its description
    text = config.read_text(encoding="utf-8").replace("[web]\n", '[web]\npublic_url = "https://watch.example.com/"\n')
    config.write_text(text + extra, encoding="utf-8")
    settings = load_settings(config)
    running = Running(settings)
    try:
        wait_for(lambda: len(webhook.received) >= 1 and len(mails) >= 1, 90, "the notifications")
        opened = next(d for d in running.decisions if d.transition == "open")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web.port}/metrics") as answer:
                return str(answer.read().decode())

        sent = [f'streamwatch_notifications_total{{outcome="sent",target="ops#{n}"}}' for n in (1, 2)]
        wait_for(lambda: all(s in scrape() for s in sent), 30, "both counted")  # counted after each went
        metrics = scrape()
    finally:
        running.stop()
    note = webhook.received[0]
    assert note["title"] == "[CRITICAL] Person on the right side of the fence (Gate)" and note["type"] == "failure"
    body = note["message"]
    assert "Camera: Gate" in body and "Rule: right-side · critical" in body and "Answer: yes (P(yes) 0.95)" in body
    assert "A person in red walks along the fence." in body and "Time: " in body
    assert "Alert: https://watch.example.com/alerts/" in body and "Clip: https://watch.example.com/api/events/" in body
    snapshot, clip = note["attachments"]  # the snapshot, and the clip once written (clip_post_s later)
    assert snapshot["mimetype"] == "image/jpeg" and base64.b64decode(snapshot["base64"])[:2] == b"\xff\xd8"
    assert clip["mimetype"] == "video/mp4" and base64.b64decode(clip["base64"])[4:8] == b"ftyp"
    message = mails[0]
    assert message["Subject"] == note["title"] and message["To"] == "ops@example.com"
    jpegs = [part for part in message.walk() if part.get_content_type() == "image/jpeg"]
    assert len(jpegs) == 1 and jpegs[0].get_payload(decode=True)[:2] == b"\xff\xd8"
    assert [part.get_filename() for part in message.walk() if part.get_content_type() == "video/mp4"]
    assert all(n["title"].startswith("[CRITICAL]") for n in webhook.received)  # open only: no resolve sent
    assert opened.transition == "open"
    assert 'streamwatch_notifications_total{outcome="sent",target="ops#1"}' in metrics
    assert 'streamwatch_notifications_total{outcome="sent",target="ops#2"}' in metrics
    shown = "\n".join(RedactingFormatter().format(record) for record in caplog.records)
    assert TOKEN not in metrics and TOKEN not in shown


def test_a_receiver_down_for_30_s_gets_every_notification_afterwards_in_order(
    tmp_path: Path, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    config = NotifyConfig(name="ops", urls=[webhook.url], kinds=["open", "resolved"])
    store, target, metrics = events_and_target(tmp_path, config, retry_max_s=4)

    async def main() -> None:
        async with target.running():
            for index in range(5):
                kind = "open" if index % 2 == 0 else "resolved"
                assert record(store, target, f"e{index}", kind=kind, title=f"Alert {index}") == 1
                target.notify()
                await asyncio.sleep(0.2)
            await asyncio.sleep(30)  # the receiver is down all this while
            assert target.problem() is not None and TOKEN not in str(target.problem())
            webhook.start()
            sent = 'streamwatch_notifications_total{outcome="sent",target="ops#1"} 5.0'
            async with asyncio.timeout(60):  # the counter moves after the receiver answers: wait for both
                while len(webhook.received) < 5 or sent not in metrics.render().decode():
                    await asyncio.sleep(0.1)

    caplog.set_level(logging.DEBUG)
    asyncio.run(main())
    titles = [n["title"] for n in webhook.received]
    opened, resolved = "[CRITICAL] Alert {} (Gate)", "Resolved: Alert {} (Gate)"
    assert titles == [(opened if index % 2 == 0 else resolved).format(index) for index in range(5)]
    assert "notification target ops#1: cannot deliver" in caplog.text
    shown = "\n".join(RedactingFormatter().format(record) for record in caplog.records)  # as the log shows them
    assert "cannot deliver" in shown and TOKEN not in shown
    text = metrics.render().decode()
    assert 'streamwatch_notifications_total{outcome="sent",target="ops#1"} 5.0' in text
    assert 'outcome="failed",target="ops#1"' in text and TOKEN not in text


def test_routing_quiet_hours_and_the_hourly_limit(tmp_path: Path, webhook: Webhook) -> None:
    now = datetime.now()
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    config = NotifyConfig(
        name="night",
        urls=[webhook.url],
        severities=["critical", "warning"],
        cameras=["tag:perimeter"],
        rules=["fence", "gate-open"],
        quiet_hours=quiet,
        max_per_hour=2,
    )
    store, target, metrics = events_and_target(tmp_path, config)
    assert record(store, target, "w1", severity="warning") == 0  # quiet hours: only critical gets through
    assert record(store, target, "i1", severity="info") == 0  # not a routed severity
    assert record(store, target, "r1", rule="crowding") == 0  # not a routed rule
    assert record(store, target, "c1", camera="dock") == 0  # not a routed camera (no perimeter tag)
    assert record(store, target, "u1", kind="update") == 0  # open events only, by default
    assert [record(store, target, f"k{i}") for i in range(4)] == [1, 1, 1, 1]  # critical: never held back
    text = metrics.render().decode()
    assert 'streamwatch_notifications_total{outcome="quiet",target="night#1"} 1.0' in text
    assert 'outcome="over_limit"' not in text
    assert NotifyConfig(name="n", urls=["json://h"], quiet_hours="22:00-07:00").quiet_at(datetime(2026, 1, 1, 3).time())
    assert not NotifyConfig(name="n", urls=["json://h"], quiet_hours="22:00-07:00").quiet_at(
        datetime(2026, 1, 1, 12).time()
    )


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            'name = "a"\nurls = ["json://h"]\nquiet_hours = "late"',
            'config.toml:4: notify[0].quiet_hours: expected "HH:MM-HH:MM"',
        ),
        ('name = "a"\nurls = ["no scheme"]', "config.toml:3: notify[0].urls: each url is an Apprise URL"),
        (
            'name = "a"\nurls = ["tgram://abc/123"]',
            "config.toml:3: notify[0].urls: url 1 (tgram://...) is not a URL Apprise",
        ),
        (
            'name = "a"\nurls = ["json://h", "json://"]',
            "config.toml:3: notify[0].urls: url 2 (json://...) is not a URL",
        ),
        ('name = "a"\nurls = ["nonsense://x"]', "config.toml:3: notify[0].urls: url 1 (nonsense://...) is not"),
        ('name = "a"\nurls = ["mailto://"]', "config.toml:3: notify[0].urls: url 1 (mailto://...) is not"),
        ('name = "a"\nurls = []', "config.toml:3: notify[0].urls"),
        ('name = "A b"\nurls = ["json://h"]', "config.toml:2: notify[0].name"),
        ('name = "a"\nurls = ["json://h"]\nkinds = ["opened"]', "config.toml:4: notify[0].kinds[0]"),
        ('name = "a"\nurls = ["json://h"]\nmax_per_hour = 0', "config.toml:4: notify[0].max_per_hour"),
    ],
)
def test_bad_notify_sections_name_file_line_and_field(tmp_path: Path, section: str, expected: str) -> None:
    (tmp_path / "config.toml").write_text(f"[[notify]]\n{section}\n", encoding="utf-8")
    with pytest.raises(DataFileError) as raised:
        load_settings(tmp_path / "config.toml")
    assert expected in str(raised.value), str(raised.value)


def test_two_targets_with_one_name_and_a_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twice = '[[notify]]\nname = "a"\nurls = ["json://h"]\n[[notify]]\nname = "a"\nurls = ["json://g"]\n'
    (tmp_path / "config.toml").write_text(twice, encoding="utf-8")
    with pytest.raises(DataFileError, match="each \\[\\[notify\\]\\] needs its own name; given more than once: a"):
        load_settings(tmp_path / "config.toml")
    monkeypatch.setenv("NTFY_TOPIC", "night-shift-alerts-7731")
    phone = '[model]\nid = "org/model"\n[[notify]]\nname = "phone"\nurls = ["ntfys://${NTFY_TOPIC}"]\n'
    (tmp_path / "config.toml").write_text(phone, encoding="utf-8")
    settings = load_settings(tmp_path / "config.toml")
    assert settings.notify[0].urls == ["ntfys://night-shift-alerts-7731"]
    assert scrub("posting to night-shift-alerts-7731 failed") == "posting to *** failed"
