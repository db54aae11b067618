"""Hosts that share nothing but PostgreSQL, Redis and a bucket: one API, a scheduler and two
workers, each with its own empty data dir (scratch and cache only), against a real S3
server (moto_server) reached through a TCP proxy the tests can kill and restart."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import redis

from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, write_seed_dataset
from shared.storage import Storage
from shared.store import Store
from shared.store.models import Snapshot
from shared.store.tokens import create_token
from tests.processes import REPO_ROOT, Process, start, start_command, wait_for
from tests.s3 import ACCESS_KEY, SECRET_KEY, MotoServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

VIEW = ('CREATE MATERIALIZED VIEW "hosts" AS SELECT "event_timestamp" AS ts, '
        '"timestamp_object"."hour" AS h FROM company_data."6402" WHERE "timestamp_object"."hour" < 6')
TRUTH = ('SELECT event_timestamp AS ts, timestamp_object.hour AS h FROM read_parquet(?) '
         'WHERE timestamp_object.hour < 6 ORDER BY ALL')
# ~500k rows: ~1.5 MB of Parquet, seconds to upload through the throttled proxy.
BIG_VIEW = ('CREATE MATERIALIZED VIEW "upload" AS SELECT a."event_timestamp" AS t1, '
            'md5(a."mobile_id_unique_identifier"."value" || CAST(b."event_timestamp" AS VARCHAR)) AS m '
            'FROM company_data."6402" AS a CROSS JOIN company_data."6402" AS b '
            'WHERE b."timestamp_object"."hour" = 1 AND second(b."event_timestamp") < 2')


@dataclass
class Proxy:
    """The bucket's address for every host: kill it and the S3 server is gone for them."""

    port: int
    target: int
    log_dir: Path
    process: Process | None = None

    def start(self, bytes_per_second: float = 0) -> None:
        self.process = start_command("s3-proxy", [sys.executable, str(REPO_ROOT / "tests" / "tcp_proxy.py"),
                                                  str(self.port), str(self.target), str(bytes_per_second)],
                                     {}, self.log_dir)
        wait_for(self._answers, timeout=10, message="proxy listening")

    def _answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
            return True
        return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process = None


@dataclass
class Hosts:
    root: Path
    store: Store
    env: dict[str, str]
    proxy: Proxy
    moto: MotoServer
    prefix: str
    url: str = ""
    http: httpx.Client | None = None
    processes: dict[str, Process] = field(default_factory=dict)

    def host_env(self, name: str) -> dict[str, str]:
        data = self.root / name
        data.mkdir(exist_ok=True)
        return {**self.env, "DATAPLANE_DATA_DIR": str(data)}

    def start(self, name: str, args: list[str]) -> Process:
        process = start(name, args, self.host_env(name), self.root / "logs")
        self.processes[name] = process
        return process

    def worker(self, name: str) -> Process:
        process = self.start(name, ["worker", "--cluster", "shared", "--concurrency", "1"])
        wait_for(lambda: " ready." in process.log() or not process.alive(), timeout=60, message=f"{name} ready")
        assert process.alive(), process.log()
        return process

    @property
    def client(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in self.processes.items())

    def run(self, nql: str, **options: Any) -> str:
        response = self.client.post("/nql/run", json={"nql": nql, **options})
        assert response.status_code == 201, response.text
        return str(response.json()["job_id"])

    def wait(self, job_id: str, *states: str, timeout: float = 90) -> dict[str, Any]:
        wait_for(lambda: self.client.get(f"/jobs/{job_id}").json()["state"] in states, timeout=timeout,
                 interval=0.2, message=f"job {job_id} in {states}\n{self.logs()}")
        return dict(self.client.get(f"/jobs/{job_id}").json())

    def bucket(self) -> Storage:
        """The bucket itself, not through the proxy."""
        return Storage.s3(f"s3://dataplane-test/{self.prefix}", endpoint=self.moto.endpoint,
                          access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)

    def snapshot_keys(self) -> set[str]:
        with self.store.unit_of_work() as session:
            return {key for files in session.query(Snapshot.files) for key in files[0]}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer, pg_database: str,
          redis_db: int) -> Iterator[Hosts]:
    root = tmp_path_factory.mktemp("hosts")
    broker = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    store = Store.from_url(pg_database)
    with store.unit_of_work() as session:
        for table in ("job_transitions", "job_tags", "refresh_schedules", "view_progress", "snapshots", "jobs",
                      "datasets", "api_tokens"):
            session.execute(__import__("sqlalchemy").text(f"DELETE FROM {table}"))
        token = create_token(session, company_id=1, user_id=7)
    proxy = Proxy(free_port(), moto.port, root / "logs")
    proxy.start()
    prefix = f"hosts-{uuid.uuid4().hex[:8]}"
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_BROKER_URL": broker,
           "DATAPLANE_STORAGE_URL": f"s3://dataplane-test/{prefix}",
           "DATAPLANE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
           "DATAPLANE_S3_ACCESS_KEY_ID": ACCESS_KEY, "DATAPLANE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
           "DATAPLANE_LEASE_SECONDS": "6", "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5",
           "DATAPLANE_RETRY_BACKOFF_SECONDS": "0.5", "DATAPLANE_DUCKDB_THREADS": "1"}
    hosts = Hosts(root, store, env, proxy, moto, prefix)
    # `dataplane datasets import` on a host of its own: it uploads.
    seed = root / "seed.parquet"
    write_seed_dataset(seed, 20_000)
    importer = start("import", ["datasets", "import", "--company-id", "1", "--dataset-id", str(SEED_DATASET_ID),
                                "--name", "seed", str(seed)], hosts.host_env("importer"), root / "logs")
    assert importer.popen.wait(timeout=120) == 0, importer.log()
    port = free_port()
    hosts.start("api", ["api", "--port", str(port), "--no-access-log"])
    hosts.start("scheduler", ["scheduler"])
    hosts.url = f"http://127.0.0.1:{port}"
    hosts.http = httpx.Client(base_url=hosts.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        wait_for(lambda: _healthy(hosts.url), timeout=60, message="api healthy")
        yield hosts
    finally:
        hosts.client.close()
        for process in hosts.processes.values():
            process.stop()
        proxy.kill()
        store.dispose()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _csv_rows(body: bytes) -> list[tuple[str, ...]]:
    rows = list(csv.reader(io.StringIO(body.decode())))
    return sorted(tuple(r) for r in rows[1:])


def test_written_on_one_host_appended_on_another_read_through_the_api(hosts: Hosts) -> None:
    worker_a = hosts.worker("worker-a")
    first = hosts.wait(hosts.run(VIEW), "completed", "failed")
    assert first["state"] == "completed", first["failures"]
    assert first["executor"].startswith("dataplane.shared.")
    worker_a.stop()
    worker_b_cache = hosts.root / "worker-b" / "cache"
    assert not worker_b_cache.exists()  # a cold host
    hosts.worker("worker-b")
    second = hosts.wait(hosts.run(VIEW), "completed", "failed")
    assert second["state"] == "completed", second["failures"]
    assert second["executor"] != first["executor"]
    assert any((worker_b_cache / "objects").rglob("*.parquet"))  # it fetched its inputs
    # The data lives in the bucket only: no host holds a dataset file.
    for host in ("worker-a", "worker-b", "api", "scheduler", "importer"):
        assert not list((hosts.root / host / "datasets").rglob("*.parquet")), host
    assert hosts.snapshot_keys() <= {o.key for o in hosts.bucket().list()}

    truth = duckdb.execute(TRUTH, [str(hosts.root / "seed.parquet")]).fetchall()
    expected = sorted((f"{ts:%Y-%m-%d %H:%M:%S.%f}"[:-3], str(h)) for ts, h in truth)
    page = hosts.client.get(f"/jobs/{second['job_id']}/results", params={"limit": 500, "offset": 0}).json()
    assert page["rowCount"] == len(truth) and len(page["rows"]) == min(500, len(truth))
    last = hosts.client.get(f"/jobs/{second['job_id']}/results",
                            params={"limit": 500, "offset": len(truth) - 3}).json()
    assert len(last["rows"]) == 3
    download = hosts.client.get(f"/jobs/{second['job_id']}/result", params={"format": "csv"})
    assert download.status_code == 200 and _csv_rows(download.content) == expected
    dataset = hosts.client.get(f"/datasets/{second['result']['dataset_id']}").json()
    assert dataset["row_count"] == 2 * len(truth)

    # Nothing about the store reaches a client; no credential reaches a log.
    answers = json.dumps([first, second, page, dataset, hosts.client.get("/jobs").json()])
    for hidden in (SECRET_KEY, ACCESS_KEY, "dataplane-test", hosts.prefix, str(hosts.proxy.port),
                   str(hosts.root)):
        assert hidden not in answers, hidden
    for name, process in hosts.processes.items():
        assert SECRET_KEY not in process.log(), name


def test_the_bucket_dies_during_an_upload_and_comes_back(hosts: Hosts) -> None:
    if "worker-b" not in hosts.processes or not hosts.processes["worker-b"].alive():
        hosts.worker("worker-b")
    hosts.proxy.kill()
    hosts.proxy.start(bytes_per_second=300_000)  # the ~1.5 MB upload takes seconds
    job_id = hosts.run(BIG_VIEW, retry_limit=2)
    hosts.wait(job_id, "running")
    staging = hosts.root / "worker-b" / "staging"
    wait_for(lambda: any(staging.rglob("out/part-*.parquet")), timeout=60, message="output staged")
    time.sleep(1.5)  # the upload is under way
    hosts.proxy.kill()
    time.sleep(3)
    hosts.proxy.start()
    job = hosts.wait(job_id, "completed", "failed", timeout=180)
    if job["state"] == "failed":  # a readable reason, no address of the store
        assert "object storage" in job["failures"][-1]["message"], job["failures"]
    else:
        assert any("object storage" in f["message"] for f in job["failures"]) or job["attempts"] == 1
    keys = {o.key for o in hosts.bucket().list()}
    assert hosts.snapshot_keys() <= keys  # no snapshot lists a missing object
    with hosts.store.unit_of_work() as session:
        assert session.query(Snapshot).filter(Snapshot.job_id == uuid.UUID(job_id)).count() == (
            1 if job["state"] == "completed" else 0)


def test_results_during_an_outage_answer_503_quickly(hosts: Hosts) -> None:
    if "worker-b" not in hosts.processes or not hosts.processes["worker-b"].alive():
        hosts.worker("worker-b")
    job = hosts.wait(hosts.run(VIEW.replace('"hosts"', '"outage"')), "completed", "failed")
    assert job["state"] == "completed", job["failures"]
    hosts.proxy.kill()
    try:
        for path, params in ((f"/jobs/{job['job_id']}/results", {"limit": 10}),
                             (f"/jobs/{job['job_id']}/result", {"format": "csv"}),
                             (f"/jobs/{job['job_id']}/result", {"format": "parquet"})):
            started = time.monotonic()
            response = hosts.client.get(path, params=params)
            assert time.monotonic() - started < 10, path
            assert response.status_code == 503, (path, response.status_code, response.text[:200])
            body = response.json()
            assert body["status"] == 503 and body["title"] and "object storage" in body["detail"]
            assert "dataplane-test" not in response.text and str(hosts.proxy.port) not in response.text
    finally:
        hosts.proxy.start()
    assert hosts.client.get(f"/jobs/{job['job_id']}/results", params={"limit": 10}).status_code == 200


@pytest.mark.parametrize("command", [["api", "--port", "0"], ["scheduler"], ["worker", "--cluster", "shared"]])
def test_a_missing_bucket_stops_a_process_at_start_with_one_line(
        command: list[str], moto: MotoServer, tmp_path: Path, pg_database: str) -> None:
    env = {"DATAPLANE_DATABASE_URL": pg_database, "DATAPLANE_DATA_DIR": str(tmp_path / "data"),
           "DATAPLANE_STORAGE_URL": "s3://no-such-bucket/x", "DATAPLANE_S3_ENDPOINT_URL": moto.endpoint,
           "DATAPLANE_S3_ACCESS_KEY_ID": ACCESS_KEY, "DATAPLANE_S3_SECRET_ACCESS_KEY": SECRET_KEY}
    process = start(command[0], command, env, tmp_path / "logs")
    assert process.popen.wait(timeout=60) != 0
    lines = [line for line in process.log().splitlines() if line.strip()]
    assert lines[-1].startswith("Error: DATAPLANE_STORAGE_URL: bucket"), lines[-5:]
    assert SECRET_KEY not in process.log()


def test_settings_repr_hides_the_secret() -> None:
    settings = Settings(s3_secret_access_key=SECRET_KEY)
    assert SECRET_KEY not in repr(settings) and SECRET_KEY not in str(settings.model_dump())
