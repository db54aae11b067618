"""PostgreSQL and Redis servers of the fault runs' own, on free ports.

The fault runs stop, crash and restart their servers; they must never touch the shared
PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) that other test sessions use.
So each run starts its own:

* `PrivateRedis`: `redis-server` without persistence, in a process group of its own;
  `crash()` is a SIGKILL (no save), so a restart empties every queue.
* `PrivatePostgres`: a throw-away cluster (`initdb` into a fresh directory, trust auth,
  TCP on 127.0.0.1 only, its socket in its own directory) run with `pg_ctl`. initdb and
  the server refuse root, so as root they run as the `postgres` OS user (`runuser`).

Both are context managers and `close()` is idempotent: a run tears them down on success,
on an exception and on Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

PG_BIN = Path(os.environ.get("DATAPLANE_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the OS user that runs the server when we are root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_tools() -> list[str]:
    """What this machine lacks to run the private servers (empty: all there)."""
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            missing.append(str(PG_BIN / tool))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            missing.append(f"OS user {PG_USER!r} (initdb refuses root)")
        if shutil.which("runuser") is None:
            missing.append("runuser")
    return missing


class PrivateRedis:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        try:
            self.popen = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited: see {self.workdir}/redis.log")
            if port_open(self.port):
                self.starts += 1
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start within {timeout}s")

    def crash(self) -> None:
        """SIGKILL: no shutdown save, like a crash; every queued message is gone."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        self.popen = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.crash()
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        self.crash()

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PrivatePostgres:
    """A PostgreSQL 15 cluster of our own. Its directory is made under the system temp
    dir (not a 0700 pytest/mkdtemp folder the `postgres` user could not enter)."""

    def __init__(self, port: int | None = None, *, keep: bool = False) -> None:
        self.port = port or free_port()
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="dataplane-faults-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.sockets.mkdir()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            record = pwd.getpwnam(PG_USER)
            for path in (self.root, self.sockets):
                os.chown(path, record.pw_uid, record.pw_gid)
            self.root.chmod(0o755)
        self.started = False
        self.restarts = 0

    def _run(self, *argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*argv]
        if self._as_postgres:
            command = ["runuser", "-u", PG_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd=self.root, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n"
                               f"{result.stderr}\n{self.log_tail()}")
        return result

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale", "C")

    def _options(self) -> str:
        # fsync off: we crash the server process, never the machine, so the kernel keeps
        # every WAL write; commits stay synchronous (a crash loses no committed transaction).
        return (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c max_connections=200 "
                "-c log_min_messages=warning")

    def start(self, timeout: float = 60) -> None:
        if not self.data.exists():
            self.init()
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", self._options(), "-l", str(self.log),
                  "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        self.started = True
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self._run(str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-q", check=False, timeout=10)
            if result.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL on port {self.port} not ready within {timeout}s\n{self.log_tail()}")

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """`fast`: sessions are terminated, a clean shutdown; `immediate`: like a crash
        (no checkpoint; the next start replays the WAL)."""
        if not self.started:
            return
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)),
                  "stop", timeout=timeout + 10)
        self.started = False

    def restart(self, mode: str = "fast", down_seconds: float = 0.0) -> None:
        self.stop(mode)
        if down_seconds > 0:
            time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def close(self) -> None:
        try:
            if self.started:
                try:
                    self.stop("immediate")
                except Exception:
                    self._kill_postmaster()
        finally:
            self.started = False
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
