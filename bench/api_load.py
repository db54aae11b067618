"""The API under load: 32 concurrent clients of two companies, jobs running alongside.

A real `dataplane api --workers N`, `dataplane scheduler` and 2 `dataplane worker`s on a
fresh PostgreSQL database and Redis db; each company has its own seed-shaped dataset
(100,000 rows) and token. Each client (half per company) loops for `--seconds`: waits a
think time (uniform 0.5-1.5 s: 32 users, ~32 requests/s offered), then one request drawn
from the mix

    submit 25%  POST /nql/run: a view under a new name or a forecast, over one of a few
                query shapes with a random literal (a new statement text every time)
    get    35%  GET /jobs/{id} of one of its own jobs
    list   20%  GET /jobs?per_page=50
    page   20%  GET /jobs/{id}/results?limit=100 of a completed view of its company

and records the latency at the client (asyncio + httpx, one connection pool per
client). Every submitted job runs on the workers meanwhile. Reports p50/p99 per kind and
overall, and the count of 5xx answers and transport errors. Target: p50 <= 100 ms,
p99 <= 500 ms, no 5xx.

    .venv/bin/python bench/api_load.py [--clients 32] [--seconds 60] [--api-workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._faults.servers import free_port
from bench._results import record
from bench._system import ROOT, BenchSystem, api_args, wait_healthy, wait_until
from shared.sample_data import write_seed_dataset
from shared.store.tokens import create_token
from worker.importer import import_dataset

COMPANIES = {1: 6402, 2: 6403}  # company -> its dataset
SHAPES = (
    'SELECT "mobile_id_unique_identifier"."value" AS mobile_id, "timestamp_object"."hour" AS hour '
    'FROM company_data."{ds}" WHERE "timestamp_object"."hour" < {n}',
    'SELECT "timestamp_object"."day" AS day, COUNT(*) AS events FROM company_data."{ds}" '
    'WHERE "geographic_location"."latitude" > {n} GROUP BY 1',
    'SELECT "event_timestamp", "geographic_location"."longitude" AS lon FROM company_data."{ds}" '
    'WHERE "timestamp_object"."hour" = {n} % 24 ORDER BY 1 LIMIT 100',
)
MIX = (("submit", 0.25), ("get", 0.35), ("list", 0.20), ("page", 0.20))


def statement(company: int, serial: str, rng: random.Random) -> str:
    query = rng.choice(SHAPES).format(ds=COMPANIES[company], n=rng.randint(1, 59))
    if rng.random() < 0.5:
        return f"EXPLAIN {query}"
    return f'CREATE MATERIALIZED VIEW "load_{serial}" AS {query}'


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server_errors: int = 0
    transport_errors: int = 0
    api_cpu_seconds: float = 0.0  # CPU the API's processes used during the load
    other: dict[int, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Company:
    id: int
    token: str
    jobs: list[str] = field(default_factory=list)  # its submitted jobs
    views: list[str] = field(default_factory=list)  # its completed view jobs (result pages)


async def client(index: int, company: Company, base: str, deadline: float, tally: Tally) -> None:
    rng = random.Random(index)
    headers = {"Authorization": f"Bearer {company.token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        serial = 0
        while True:
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            if time.monotonic() > deadline:
                return
            kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
            if (kind == "get" and not company.jobs) or (kind == "page" and not company.views):
                kind = "list"
            started = time.perf_counter()
            try:
                if kind == "submit":
                    serial += 1
                    response = await http.post("/nql/run", json={"nql": statement(company.id, f"{index}_{serial}_"
                                                                                  f"{rng.randrange(10**9)}", rng)})
                    if response.status_code == 201:
                        company.jobs.append(response.json()["job_id"])
                elif kind == "get":
                    response = await http.get(f"/jobs/{rng.choice(company.jobs)}")
                elif kind == "list":
                    response = await http.get("/jobs", params={"per_page": 50})
                else:
                    response = await http.get(f"/jobs/{rng.choice(company.views)}/results", params={"limit": 100})
            except httpx.TransportError:
                tally.transport_errors += 1
                continue
            tally.latencies[kind].append((time.perf_counter() - started) * 1000)
            if response.status_code >= 500:
                tally.server_errors += 1
            elif response.status_code not in (200, 201):
                tally.other[response.status_code] += 1


def prepare(system: BenchSystem, rows: int) -> dict[int, Company]:
    companies = {}
    for company_id, dataset_id in COMPANIES.items():
        source = system.tmp / f"seed-{company_id}.parquet"
        write_seed_dataset(source, rows, seed=company_id)
        import_dataset(system.settings, system.store, company_id=company_id, dataset_id=dataset_id,
                       name=f"seed{company_id}", source=source)
        with system.store.unit_of_work() as session:
            companies[company_id] = Company(company_id, create_token(session, company_id=company_id, user_id=1))
    return companies


def seed_views(base: str, companies: dict[int, Company]) -> None:
    """A few completed views per company, so result pages have something to read."""
    rng = random.Random(0)
    pending = []
    for company in companies.values():
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {company.token}"}, timeout=60) as http:
            for i in range(4):
                nql = f'CREATE MATERIALIZED VIEW "seed_view_{i}" AS ' + rng.choice(SHAPES).format(
                    ds=COMPANIES[company.id], n=30)
                response = http.post("/nql/run", json={"nql": nql})
                assert response.status_code == 201, response.text
                pending.append((company, response.json()["job_id"]))
    for company, job_id in pending:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {company.token}"}, timeout=60) as http:
            def done(http: httpx.Client = http, job_id: str = job_id) -> bool:
                return bool(http.get(f"/jobs/{job_id}").json()["state"] == "completed")
            wait_until(done, timeout=120, interval=0.2)
        company.views.append(job_id)
        company.jobs.append(job_id)


async def load(base: str, companies: dict[int, Company], clients: int, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    ids = sorted(companies)
    await asyncio.gather(*(client(i, companies[ids[i % len(ids)]], base, deadline, tally) for i in range(clients)))
    return tally


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn's server processes): unlike
    latency, it does not grow when other work on the machine takes the cores."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run(clients: int, seconds: float, api_workers: int, rows: int, code_root: Path = ROOT) -> tuple[Tally, float]:
    system = BenchSystem("api_load", redis_db=13, code_root=code_root)
    try:
        companies = prepare(system, rows)
        port = free_port()
        api = system.start("api", api_args(port, api_workers))
        system.scheduler()
        system.workers(2)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base)
        assert api.alive()
        seed_views(base, companies)
        started = time.perf_counter()
        cpu_before = cpu_seconds(api.pid)
        tally = asyncio.run(load(base, companies, clients, seconds))
        tally.api_cpu_seconds = cpu_seconds(api.pid) - cpu_before
        return tally, time.perf_counter() - started
    finally:
        system.stop()


def summary(tally: Tally, elapsed: float) -> list[str]:
    every = [v for values in tally.latencies.values() for v in values]
    return [
        f"{len(every)} requests ({len(every) / elapsed:.1f}/s)",
        "",
        "| request | count | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|",
        *(f"| {kind} | {len(tally.latencies[kind])} | {percentile(tally.latencies[kind], 0.5):.1f} | "
          f"{percentile(tally.latencies[kind], 0.99):.1f} |" for kind, _ in MIX),
        f"| **all** | {len(every)} | **{percentile(every, 0.5):.1f}** | **{percentile(every, 0.99):.1f}** |",
        "",
        f"5xx: {tally.server_errors}; transport errors: {tally.transport_errors}; other non-2xx: "
        f"{dict(tally.other) or 'none'}. API CPU: {tally.api_cpu_seconds * 1000 / max(len(every), 1):.1f} ms "
        "per request (all its processes).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--before", type=Path, default=None,
                        help="also run another checkout's processes (its API with 1 worker) for a before/after")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    tally, elapsed = run(args.clients, args.seconds, args.api_workers, args.rows)
    lines = [
        f"{args.clients} clients (2 companies), think time 0.5-1.5 s, {args.seconds:.0f} s, "
        f"`dataplane api --workers {args.api_workers}`, 2 workers running the submitted jobs, "
        "PostgreSQL + Redis; target p50 <= 100 ms, p99 <= 500 ms, no 5xx:",
        "",
        *summary(tally, elapsed),
    ]
    if args.before is not None:
        before, before_elapsed = run(args.clients, args.seconds, 1, args.rows, args.before.resolve())
        lines += ["", f"Before ({args.before}, one API process), same run:", "", *summary(before, before_elapsed)]
    lines += ["", f"Command: `.venv/bin/python bench/api_load.py --clients {args.clients} --seconds "
              f"{args.seconds:.0f} --api-workers {args.api_workers}`"]
    print("\n".join(lines))
    if not args.no_record:
        record("API under load (bench/api_load.py)", lines)


if __name__ == "__main__":
    main()
