"""`dataplane dev` (SQLite store, SQLite broker, no DATAPLANE_* set) delivers webhooks with
no extra process: each worker's webhooks child does it, and loopback http:// receivers
are allowed there. Ctrl-C leaves no delivery process behind."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from shared.sample_data import SEED_VIEW_NQL
from tests.e2e.devmode import clean_env, free_port, start_dev
from tests.processes import start_command, wait_for
from tests.webhooks.test_e2e import Receiver

pytestmark = pytest.mark.e2e


def test_dev_mode_delivers_every_transition_signed(tmp_path: Path) -> None:
    receiver_dir = tmp_path / "receiver"
    receiver_dir.mkdir()
    process = start_command("receiver", [sys.executable, "-m", "tests.webhooks.receiver",
                                         str(receiver_dir)], {}, tmp_path / "logs")
    wait_for(lambda: (receiver_dir / "port").exists(), timeout=30, message="the receiver")
    receiver = Receiver(process, receiver_dir, int((receiver_dir / "port").read_text()))
    (tmp_path / "dev").mkdir()
    port = free_port()
    dev = start_dev(["--port", str(port)], cwd=tmp_path / "dev", env=clean_env())
    try:
        url = dev.wait_for_line(r"^API:\s+(\S+)", timeout=180).group(1)
        token = dev.wait_for_line(r"^Token:\s+(\S+)", timeout=5).group(1)
        def delivery_children() -> int:  # one per worker, started once it is ready
            return sum("webhooks" in p.cmdline() for p in dev.descendants())
        wait_for(lambda: delivery_children() == 2, timeout=60, message="two webhooks children")
        children = dev.descendants()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as client:
            sub = client.post("/webhooks", json={"name": "dev", "url": receiver.url("/ok")})
            assert sub.status_code == 201, sub.text
            receiver.set_secret("/ok", sub.json()["secret"])
            answer = client.post("/nql/run", json={"nql": SEED_VIEW_NQL})
            assert answer.status_code == 201, answer.text
            job = answer.json()
            wait_for(lambda: [r["body"]["state"] for r in receiver.requests("/ok")]
                     == ["pending", "running", "completed"], timeout=120, interval=0.3,
                     message="the job's three events")
            assert all(r["verified"] for r in receiver.requests("/ok"))
            assert {r["body"]["job"]["job_id"] for r in receiver.requests("/ok")} == {job["job_id"]}
    finally:
        code = dev.interrupt()
        process.stop()
    assert code == 0, "\n".join(dev.lines)
    time.sleep(0.5)
    orphans = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert orphans == []
