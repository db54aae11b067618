"""`dataplane dev` from a temp dir with no DATAPLANE_* variables: submit the seed view over
HTTP with the printed token, wait for `completed`, read the results, Ctrl-C; a second start
reuses the data and the token."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest

from shared.sample_data import SEED_VIEW_NQL
from tests.e2e.devmode import clean_env, free_port, start_dev

pytestmark = pytest.mark.e2e


def _wait_terminal(client: httpx.Client, job_id: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, object] = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not terminal after {timeout}s: {job}")


def test_dev_mode_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    dev = start_dev(["--port", str(port)], cwd=tmp_path, env=clean_env())
    try:
        url = dev.wait_for_line(r"^API:\s+(\S+)", timeout=180).group(1)
        token = dev.wait_for_line(r"^Token:\s+(\S+)", timeout=5).group(1)
        dev.wait_for_line(r"^Try:\s+curl .*--data-binary @\S+sample-view\.json", timeout=5)
        assert url == f"http://127.0.0.1:{port}"
        assert (tmp_path / ".dataplane" / "dataplane.sqlite").exists()
        children = dev.descendants()
        assert len(children) >= 4

        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            response = client.post("/nql/run", json={"nql": SEED_VIEW_NQL})
            assert response.status_code == 201, response.text
            job = _wait_terminal(client, response.json()["job_id"], timeout=180)
            assert job["state"] == "completed", job
            results = client.get(f"/jobs/{job['job_id']}/results", params={"limit": 5}).json()
        assert [c["name"] for c in results["schema"]] == ["mobile_id", "day", "hour", "latitude", "longitude"]
        assert results["rowCount"] > 0 and len(results["rows"]) == min(5, results["rowCount"])
    finally:
        code = dev.interrupt()
    assert code == 0, "\n".join(dev.lines)
    assert dev.lines[-1] == "stopped"
    time.sleep(0.5)
    orphans = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert orphans == []

    # A second start reuses the data: same token, no new demo dataset.
    again = start_dev(["--port", str(port)], cwd=tmp_path, env=clean_env())
    try:
        assert again.wait_for_line(r"^Token:\s+(\S+)", timeout=120).group(1) == token
        assert not any("creating demo dataset" in line for line in again.lines)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            listing = client.get("/jobs").json()
        assert listing["total_records"] == 1
    finally:
        assert again.interrupt() == 0
