"""Where a trivial job's cost goes across the whole system, not just in `run_job`.

A private PostgreSQL 15 with `pg_stat_statements` preloaded (the shared server does not
preload it) and a private Redis, on free ports; a real
`dataplane api`, `dataplane scheduler` and 2 workers, each under `py-spy record` (pool
children included). Clients submit N trivial forecasts over HTTP (the throughput bench's
job) and wait for them to complete. Then it prints, per job: the statements PostgreSQL ran
(calls and time, by statement), and for each process the functions with the most samples
(inclusive and own), from py-spy's collapsed stacks. Nothing is recorded in RESULTS.md:
bench/PROFILE.md is written from its output.

    .venv/bin/python bench/profile_system.py [--jobs 400] [--clients 4] [--api-workers 1]
        [--kind forecast|view] [--code-root DIR] [--no-spy]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._faults.servers import PrivatePostgres, PrivateRedis, free_port
from bench._system import ROOT, TRIVIAL_ENV, TRIVIAL_NQL, api_args, wait_healthy, wait_until
from shared.config import Settings
from shared.store import Store
from shared.store.migrate import upgrade
from shared.store.models import Job
from shared.store.tokens import create_token
from tests.processes import Process, start

PY_SPY = Path(sys.executable).with_name("py-spy")
VIEW_NQL = 'CREATE MATERIALIZED VIEW "v_{}" AS SELECT "x", "label" FROM company_data."1" WHERE "x" > 1'
# Leaf frames where a thread waits rather than computes (py-spy counts some of them busy).
WAITS = frozenset({"EpollSelector.select", "_epoll.poll", "Condition.wait", "Event.wait",
                   "Thread._wait_for_tstate_lock", "SocketBuffer._read_from_socket", "Connection.wait",
                   "BaseSelectorEventLoop.select", "sleep", "poll", "select", "_recv_into", "recv"})


class StatsPostgres(PrivatePostgres):
    def _options(self) -> str:
        return super()._options() + " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"


def spy(process: Process, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(PY_SPY), "record", "--pid", str(process.pid), "--subprocesses", "--rate", "200",
                             "--format", "raw", "--duration", str(seconds), "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int) -> list[str]:
    """Inclusive and own samples per function, from py-spy's collapsed stacks."""
    if not raw.exists():
        return [f"(no samples in {raw.name})"]
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        if frames[-1].split(" (")[0] in WAITS:  # blocked on a socket, a lock or a timer: not CPU
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    lines = [f"samples not waiting: {total}"]
    lines += [f"  {100 * v / total:5.1f}% incl  {k}" for k, v in inclusive.most_common(top)]
    lines += [f"  {100 * v / total:5.1f}% own   {k}" for k, v in own.most_common(top // 2)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--code-root", type=Path, default=ROOT,
                        help="the checkout whose processes run (e.g. main, for a before/after)")
    parser.add_argument("--no-spy", action="store_true", help="statements only, no py-spy")
    parser.add_argument("--kind", choices=("forecast", "view"), default="forecast",
                        help="the trivial forecast, or a view of it under a new name (statistics on)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dataplane-profile-system-"))
    processes: list[Process] = []
    spies: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    with StatsPostgres() as pg, PrivateRedis(tmp / "redis") as private_redis:
        url = pg.create_database("profile")
        upgrade(url)
        broker = private_redis.url
        settings = Settings(data_dir=tmp / "data", database_url=url, broker_url=broker)
        settings.ensure_dirs()
        store = Store.from_settings(settings)
        try:
            import duckdb

            from worker.importer import import_dataset

            source = tmp / "tiny.parquet"
            duckdb.sql(f"COPY (SELECT range AS x, 'v' || range AS label FROM range(5)) TO '{source}' (FORMAT parquet)")
            import_dataset(settings, store, company_id=1, dataset_id=1, name="tiny", source=source)
            with store.unit_of_work() as session:
                token = create_token(session, company_id=1, user_id=1)
            env = {"DATAPLANE_DATABASE_URL": url, "DATAPLANE_BROKER_URL": broker,
                   "DATAPLANE_DATA_DIR": str(settings.data_dir), **TRIVIAL_ENV}
            port = free_port()
            code = {"cwd": args.code_root.resolve()}
            api = start("api", api_args(port, args.api_workers), env, tmp / "logs", **code)
            scheduler = start("scheduler", ["scheduler"], env, tmp / "logs", **code)
            workers = [start(f"worker{i}", ["worker", "--cluster", "shared", "--concurrency", "1", "--loglevel",
                                            "warning"], env, tmp / "logs", **code) for i in range(2)]
            processes += [api, scheduler, *workers]
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base)
            wait_until(lambda: all("[queues]" in w.log() for w in workers), timeout=60)
            wait_until(lambda: "scheduler running" in scheduler.log(), timeout=30)
            headers = {"Authorization": f"Bearer {token}"}

            def submit(count: int) -> None:
                with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                    for _ in range(count):
                        nql = TRIVIAL_NQL if args.kind == "forecast" else VIEW_NQL.format(uuid.uuid4().hex[:12])
                        response = client.post("/nql/run", json={"nql": nql})
                        assert response.status_code == 201, response.text

            def completed() -> int:
                with store.unit_of_work() as session:
                    return session.scalar(select(func.count(Job.id)).where(Job.state == "completed")) or 0

            submit(20)  # warm-up
            wait_until(lambda: completed() == 20, timeout=120)
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                conn.execute(text("SELECT pg_stat_statements_reset()"))
            seconds = max(30, args.jobs // 4)
            for process in [] if args.no_spy else processes:
                out = tmp / f"{process.name}.raw"
                spies.append((process.name, spy(process, out, seconds), out))
            time.sleep(1)
            started = time.perf_counter()
            threads = [threading.Thread(target=submit, args=(args.jobs // args.clients,)) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            total = 20 + args.clients * (args.jobs // args.clients)
            wait_until(lambda: completed() == total, timeout=1800, interval=0.2)
            elapsed = time.perf_counter() - started
            jobs = total - 20
            with admin.connect() as conn:
                rows = conn.execute(text(
                    "SELECT calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 150) "
                    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'profile') "
                    "ORDER BY calls DESC")).all()
            admin.dispose()
            print(f"{jobs} {args.kind} jobs in {elapsed:.1f} s ({jobs / elapsed:.1f} jobs/s), {args.clients} clients, "
                  f"{args.api_workers} API worker(s), 2 workers x 1 process")
            calls = sum(r[0] for r in rows)
            spent = sum(r[1] for r in rows)
            print(f"\nPostgreSQL: {calls / jobs:.1f} statements per job, {spent / jobs:.2f} ms execution per job")
            for n, ms, query in rows[:40]:
                print(f"  {n / jobs:6.2f}/job {ms / max(n, 1):7.3f} ms  {query}")
        finally:
            for _, popen, _ in spies:
                try:
                    popen.wait(timeout=seconds + 60 if spies else 1)
                except subprocess.TimeoutExpired:
                    popen.send_signal(signal.SIGINT)
                    popen.wait(timeout=30)
            for process in processes:
                process.stop()
            store.dispose()
    for name, _, out in spies:
        print(f"\n== py-spy: {name}")
        print("\n".join(summarize(out, args.top)))
    if not os.environ.get("KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
