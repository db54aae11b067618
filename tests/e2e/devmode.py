"""Drive a `dataplane dev` process as a user would: start, read its three lines, stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment of a user who has set nothing: no DATAPLANE_* at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DATAPLANE_")}


@dataclass
class DevProcess:
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.popen.stdout is not None
            for line in self.popen.stdout:
                self.lines.append(line.rstrip("\n"))
        threading.Thread(target=read, daemon=True).start()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := re.search(pattern, line):
                    return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.lines))

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a terminal sends it to the foreground process."""
        self.popen.send_signal(signal.SIGINT)
        return self.popen.wait(timeout=timeout)


def start_dev(args: list[str], cwd: Path, env: dict[str, str], executable: list[str] | None = None) -> DevProcess:
    command = executable or [sys.executable, "-m", "dataplane"]
    popen = subprocess.Popen([*command, "dev", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    process = DevProcess(popen)
    process.start_reader()
    return process
