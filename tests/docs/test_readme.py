"""The README stays true: its settings table is the settings object, its test command is
what CI runs, and its quickstart works when followed literally on a fresh copy."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from tests.e2e.devmode import DevProcess, clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    """The first fenced code block after an HTML comment marker."""
    match = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```", README, re.S)
    assert match, f"README has no block marked {marker}"
    return match.group(1).strip()


def test_settings_table_lists_every_setting() -> None:
    table = README.split("<!-- settings-table -->", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `DATAPLANE_([A-Z0-9_]+)`", table, re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_ci_runs_the_readme_test_command() -> None:
    command = block_after("test-command")
    assert command.startswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "eval" in ci


def _copy_repo(target: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", ".dataplane", "__pycache__", "*.egg-info",
                                    ".pytest_cache", ".ruff_cache", ".hypothesis", "data")
    shutil.copytree(ROOT, target, ignore=ignore)


@pytest.mark.e2e
@pytest.mark.slow
def test_quickstart_literally(tmp_path: Path) -> None:
    command = block_after("quickstart-command")
    assert command.endswith("dataplane dev")
    repo = tmp_path / "dataplane"
    _copy_repo(repo)
    port = free_port()
    env = {**clean_env(), "DATAPLANE_API_PORT": str(port)}  # the only change: a free port
    popen = subprocess.Popen(["bash", "-c", command], cwd=repo, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    dev = DevProcess(popen)
    dev.start_reader()
    try:
        token = dev.wait_for_line(r"^Token:\s+(\S+)", timeout=900).group(1)
        curl = dev.wait_for_line(r"^Try:\s+(curl .*)$", timeout=5).group(1)
        submitted = subprocess.run(["bash", "-c", curl], cwd=repo, capture_output=True, text=True,
                                   timeout=60, check=True)
        job = httpx.Response(200, content=submitted.stdout).json()
        assert job["state"] in ("pending", "running", "completed"), job
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {token}"}) as client:
            deadline = time.monotonic() + 180
            while job["state"] not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
                time.sleep(0.5)
                job = client.get(f"/jobs/{job['job_id']}").json()
        assert job["state"] == "completed", job
        # The tour's terminal client, from the venv the quickstart made.
        tour = subprocess.run([str(repo / ".venv/bin/dataplane"), "results", job["job_id"], "--limit", "3"],
                              cwd=repo, env={**env, "DATAPLANE_TOKEN": token,
                                             "DATAPLANE_API_URL": f"http://127.0.0.1:{port}"},
                              capture_output=True, text=True, timeout=60)
        assert tour.returncode == 0, tour.stderr
        assert "mobile_id" in tour.stdout and "rows)" in tour.stdout
    finally:
        os.killpg(popen.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the group
        code = popen.wait(timeout=60)
    assert code == 0, "\n".join(dev.lines[-30:])
