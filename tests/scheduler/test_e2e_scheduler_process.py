"""`dataplane scheduler` as a process: a nudge gets a job published within milliseconds
(timer set far away), in the embedded mode (SQLite store and broker, Unix datagram
nudges) and on Redis; it never imports worker code; SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.queues import SHARED_QUEUE
from shared.store import Store
from shared.store.fairshare import register_worker
from tests.processes import REPO_ROOT, start, wait_for
from tests.scheduler.helpers import get, new_job
from tests.scheduler.redis_server import PrivateRedis

pytestmark = [pytest.mark.e2e]


@pytest.fixture(params=["embedded", "redis"])
def deployment(request: pytest.FixtureRequest, data_dir: Path) -> tuple[Settings, Store]:
    if request.param == "embedded":
        url = request.getfixturevalue("sqlite_database")
        settings = Settings(data_dir=data_dir, database_url=url)  # default embedded broker
    else:
        url = request.getfixturevalue("pg_database")
        redis: PrivateRedis = request.getfixturevalue("private_redis")
        settings = Settings(data_dir=data_dir, database_url=url, broker_url=redis.url)
    store = Store.from_url(url)
    request.addfinalizer(store.dispose)
    return settings, store


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {"DATAPLANE_DATA_DIR": str(settings.data_dir),
            "DATAPLANE_DATABASE_URL": settings.database_url,
            "DATAPLANE_BROKER_URL": settings.broker_url, **extra}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_nudge_publishes_at_once_and_a_signal_stops_the_scheduler(
        deployment: tuple[Settings, Store], tmp_path: Path, stop_signal: signal.Signals) -> None:
    settings, store = deployment
    scheduler = start("scheduler", ["scheduler"],
                      env_of(settings, DATAPLANE_DISPATCH_INTERVAL_SECONDS="60"),
                      tmp_path / "logs")
    try:
        wait_for(lambda: "scheduler running" in scheduler.log() or not scheduler.alive(),
                 timeout=30, message="the scheduler to start")
        # Admission control publishes only to queues a live worker serves: register one.
        with store.unit_of_work() as session:
            register_worker(session, name=f"test-worker-{tmp_path.name}", queue=SHARED_QUEUE,
                            concurrency=100)  # the store is shared by the parameters
        time.sleep(0.5)  # past its first sweep; the next timed one is a minute away
        latencies = []
        for _ in range(3):
            job_id = new_job(store)
            nudged = time.monotonic()
            nudge_dispatcher(settings)
            wait_for(lambda job_id=job_id: get(store, job_id).published_at is not None,
                     timeout=5, interval=0.005, message=f"job published\n{scheduler.log()}")
            latencies.append(time.monotonic() - nudged)
        print("nudge to published:", [f"{x * 1000:.0f} ms" for x in latencies])
        assert max(latencies) < 1.0, latencies  # typically a few milliseconds

        stopping = time.monotonic()
        scheduler.signal_group(stop_signal)
        scheduler.popen.wait(timeout=10)
        assert time.monotonic() - stopping < 5
        assert scheduler.popen.returncode == 0, scheduler.log()
        assert "scheduler stopped" in scheduler.log()
    finally:
        scheduler.stop()


def test_the_scheduler_never_imports_worker_code_or_duckdb() -> None:
    probe = (
        "import sys\n"
        "from scheduler.cli import scheduler\n"
        "from scheduler.service import build_duties\n"
        "from scheduler.producer import producer_app\n"
        "from shared.config import Settings\n"
        "producer_app(Settings())\n"
        "bad = sorted(m for m in sys.modules if m == 'duckdb' or m.startswith('worker'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
