"""One POST against a real receiver process: the signature the README's snippet checks,
the connection to the address that was checked (never a second resolution), no
redirects, and the URL rules applied again at delivery time."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shared.webhook_urls
from shared.webhook_sender import post_event
from shared.webhook_signing import signature
from shared.webhook_urls import UnsafeWebhookUrl, check_url
from tests.processes import start_command, wait_for
from tests.webhooks.test_e2e import Receiver

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    process = start_command("receiver", [sys.executable, "-m", "tests.webhooks.receiver",
                                         str(tmp_path)], {}, tmp_path / "logs")
    try:
        wait_for(lambda: (tmp_path / "port").exists(), timeout=30, message="the receiver")
        made = Receiver(process, tmp_path, int((tmp_path / "port").read_text()))
        for path in ("/ok", "/status/302"):
            made.set_secret(path, SECRET)
        yield made
    finally:
        process.stop()


def _post(url: str, *, allow_private: bool = True) -> tuple[bool, int | None, str | None]:
    outcome = post_event(url, secret=SECRET, event_id="e-1", body=b'{"a":1}', timeout=5,
                         allow_private=allow_private)
    return outcome.ok, outcome.status_code, outcome.error


def test_signed_post_and_no_redirects(receiver: Receiver) -> None:
    assert _post(receiver.url("/ok")) == (True, 200, None)
    ok, status, _ = _post(receiver.url("/status/302"))
    assert not ok and status == 302
    got = receiver.requests()
    assert [r["path"] for r in got] == ["/ok", "/status/302"] and all(r["verified"] for r in got)
    assert got[0]["event_id"] == "e-1" and got[0]["body"] == {"a": 1}


def test_connects_to_the_checked_address_without_resolving_again(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]  # a name no real DNS knows: only the checked address can work

    monkeypatch.setattr(shared.webhook_urls, "system_resolver", resolver)
    url = f"http://hooks.example.test:{receiver.port}/ok"
    assert _post(url) == (True, 200, None)
    assert calls == ["hooks.example.test"]
    assert receiver.requests()[-1]["host"] == f"hooks.example.test:{receiver.port}"
    # The same name resolving to loopback is refused when private addresses are not allowed,
    # at delivery time too (a DNS answer that changed since the subscription was made).
    ok, status, error = _post(url, allow_private=False)
    assert not ok and status is None and "(scheme)" in (error or "")
    ok, status, error = _post(f"https://hooks.example.test:{receiver.port}/ok",
                              allow_private=False)
    assert not ok and "(loopback)" in (error or "")
    assert len(receiver.requests()) == 1


def test_every_resolved_address_is_checked() -> None:
    with pytest.raises(UnsafeWebhookUrl) as caught:
        check_url("https://mixed.example.test/h", allow_private=False,
                  resolver=lambda host, port: ["93.184.215.14", "10.0.0.7"])
    assert caught.value.rule == "private"


def test_the_readme_snippet_verifies_a_signature() -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"Verifying a delivery.*?```python\n(.*?)```", readme, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(code.group(1), namespace)
    verify = namespace["verify"]
    import time

    body = json.dumps({"event_id": "x"}).encode()
    stamp = str(int(time.time()))
    headers = {"X-Dataplane-Timestamp": stamp,
               "X-Dataplane-Signature": signature(SECRET, stamp, body)}
    assert verify(SECRET, headers, body)  # type: ignore[operator]
    assert not verify("whsec_other", headers, body)  # type: ignore[operator]
    assert not verify(SECRET, headers, body + b" ")  # type: ignore[operator]
