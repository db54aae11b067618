"""Start real dataplane processes (worker, scheduler, api) for end-to-end tests.

Each runs in its own process group, so a test can SIGKILL a worker with all its
children, and teardown never leaves orphans behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.s3 import STORAGE_VARIABLES

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group (the worker and its pool children): a lost worker."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Reap stragglers of the group (pool children) in any case.
        self.signal_group(signal.SIGKILL)
        return self.popen.returncode


def process_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAPLANE_")}
    # The session's object storage (DATAPLANE_TEST_STORAGE=s3) reaches every process.
    env.update({k: v for k, v in os.environ.items() if k in STORAGE_VARIABLES})
    env.update(settings_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(name: str, args: list[str], env: Mapping[str, str], log_dir: Path, *,
          cwd: Path = REPO_ROOT) -> Process:
    """`python -m dataplane <args>` in its own process group, output to a log file. The
    code run is the one under `cwd` (benchmarks compare another checkout's)."""
    return start_command(name, [sys.executable, "-m", "dataplane", *args], env, log_dir, cwd=cwd)


def start_command(name: str, argv: list[str], env: Mapping[str, str], log_dir: Path, *,
                  cwd: Path = REPO_ROOT) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(argv, cwd=cwd, env=process_env(env), stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log_path)


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1,
             message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
