"""A real S3 server for the tests: `moto_server` as a separate process on a free loopback
port, spoken to over HTTP (never in-process mocking).

`DATAPLANE_TEST_STORAGE=s3` runs the whole session against it: every `Settings()` of the
test process and every process the tests start then read and write data files in a
bucket (the session's own prefix) instead of under the data dir. Tests about object
storage itself use the `moto` fixture whatever the mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.config import Settings
from shared.storage import Storage

ACCESS_KEY = "dataplane-test-key"
SECRET_KEY = "dataplane-test-secret"
REGION = "us-east-1"
BUCKET = "dataplane-test"
STORAGE_VARIABLES = ("DATAPLANE_STORAGE_URL", "DATAPLANE_S3_ENDPOINT_URL", "DATAPLANE_S3_REGION",
                     "DATAPLANE_S3_ACCESS_KEY_ID", "DATAPLANE_S3_SECRET_ACCESS_KEY")


def s3_mode() -> bool:
    return os.environ.get("DATAPLANE_TEST_STORAGE", "").lower() == "s3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_executable() -> str:
    """`moto_server` of this interpreter's environment (the dev extra installs it)."""
    import sys

    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not found: pip install -e '.[dev]'")
    return found


@dataclass
class MotoServer:
    port: int
    popen: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # INITIAL_NO_AUTH_ACTION_COUNT=N: moto checks signatures after N requests (tests of refused keys)
    environment: dict[str, str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> MotoServer:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"moto-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen([moto_executable(), "-H", "127.0.0.1", "-p", str(self.port)],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, **(self.environment or {})})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            if self.popen.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("moto_server did not start in 30 s")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def create_bucket(self, name: str) -> None:
        """moto does not check signatures: a plain PUT makes the bucket."""
        response = httpx.put(f"{self.endpoint}/{name}", timeout=10)
        if response.status_code not in (200, 409):
            raise RuntimeError(f"cannot create bucket {name}: {response.status_code} {response.text}")

    def env(self, bucket: str = BUCKET, prefix: str | None = None) -> dict[str, str]:
        prefix = prefix if prefix is not None else uuid.uuid4().hex[:12]
        return {
            "DATAPLANE_STORAGE_URL": f"s3://{bucket}/{prefix}",
            "DATAPLANE_S3_ENDPOINT_URL": self.endpoint,
            "DATAPLANE_S3_REGION": REGION,
            "DATAPLANE_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "DATAPLANE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }


@contextlib.contextmanager
def running_moto(log_dir: Path) -> Iterator[MotoServer]:
    server = MotoServer(free_port()).start(log_dir)
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def local_copies(settings: Settings, keys: Iterable[str], into: Path) -> list[Path]:
    """Files a test can read with DuckDB: a file:// store's own, else downloads."""
    storage = Storage.from_settings(settings)
    paths = []
    for key in keys:
        local = storage.local_path(key)
        if local is None:
            local = into / key
            storage.download(key, local)
        paths.append(local)
    return paths


def object_keys(settings: Settings, prefix: str = "") -> set[str]:
    return {info.key for info in Storage.from_settings(settings).list(prefix)}
