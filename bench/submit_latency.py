"""`POST /nql/run` latency, p50/p99 over 1,000 submissions, against a real `dataplane api`
process on PostgreSQL (a fresh database, the seed dataset imported, Redis for the nudges).

Each submission is a forecast (`EXPLAIN SELECT ...` over the imported dataset) with its own
idempotency key, so each one authenticates, compiles against the catalog, inserts a job and
nudges the dispatcher. Sequential, over one keep-alive connection, measured at the client.
Baseline in the same run: `GET /jobs/{id}` (authentication + one indexed read), the floor
every authenticated request pays.

    .venv/bin/python bench/submit_latency.py [--submissions 1000] [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._results import record
from bench._system import drop_database, fresh_database
from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, write_seed_dataset
from shared.store import Store
from shared.store.tokens import create_token
from worker.importer import import_dataset

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")
DATABASE = "dataplane_bench_submit"
FORECAST = (f'EXPLAIN SELECT "event_timestamp", "geographic_location"."latitude" '
            f'FROM company_data."{SEED_DATASET_ID}" WHERE "timestamp_object"."hour" < 6')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        api = subprocess.Popen([sys.executable, "-m", "dataplane", "api", "--port", str(port),
                                "--no-access-log"], env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return api
        except httpx.TransportError:
            pass
        if api.poll() is not None:
            break
        time.sleep(0.2)
    api.kill()
    raise SystemExit(f"the API did not come up:\n{log.read_text()[-2000:]}")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> str:
    return (f"p50 {percentile(samples, 50):.2f} ms, p90 {percentile(samples, 90):.2f} ms, "
            f"p99 {percentile(samples, 99):.2f} ms, max {max(samples):.2f} ms, "
            f"mean {statistics.fmean(samples):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the imported dataset")
    args = parser.parse_args()

    url = fresh_database(DATABASE)
    api: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        root = Path(tmp)
        try:
            settings = Settings(data_dir=root / "data", database_url=url, broker_url=BROKER_URL)
            store = Store.from_url(url)
            source = root / "seed.parquet"
            write_seed_dataset(source, args.rows)
            import_dataset(settings, store, company_id=1, dataset_id=SEED_DATASET_ID,
                           name="seed", source=source)
            with store.unit_of_work() as session:
                token = create_token(session, company_id=1, user_id=1)
            store.dispose()

            env = {k: v for k, v in os.environ.items() if not k.startswith("DATAPLANE_")}
            env |= {"DATAPLANE_DATABASE_URL": url, "DATAPLANE_BROKER_URL": BROKER_URL,
                    "DATAPLANE_DATA_DIR": str(settings.data_dir)}
            port = free_port()
            api = start_api(env, port, root / "api.log")
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                              timeout=30) as client:
                submit, read = [], []
                for i in range(-20, args.submissions):  # 20 warm-up submissions
                    body = {"nql": FORECAST, "idempotency_key": f"bench-{i}-{uuid.uuid4()}"}
                    started = time.perf_counter()
                    response = client.post("/nql/run", json=body)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 201, response.text
                    if i >= 0:
                        submit.append(elapsed)
                    job_id = response.json()["job_id"]
                    started = time.perf_counter()
                    assert client.get(f"/jobs/{job_id}").status_code == 200
                    if i >= 0:
                        read.append((time.perf_counter() - started) * 1000)
        finally:
            if api is not None:
                os.killpg(api.pid, signal.SIGTERM)
                api.wait(timeout=30)
            drop_database(DATABASE)

    lines = [
        f"`POST /nql/run`, {args.submissions} forecast submissions, sequential, one keep-alive "
        f"connection, `dataplane api` on PostgreSQL, dataset of {args.rows:,} rows imported:",
        "",
        f"- submit: {summary(submit)}",
        f"- baseline `GET /jobs/{{id}}`: {summary(read)}",
        "",
        "Command: `.venv/bin/python bench/submit_latency.py`",
    ]
    print("\n".join(lines))
    record("Submit latency (POST /nql/run)", lines)


if __name__ == "__main__":
    main()
