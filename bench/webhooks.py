"""Webhooks (issue 16): what they cost a job, and how fast events reach a receiver.

Runs, in one go, the same sequential trivial jobs (submit -> completed, one at a time,
1 worker process, Redis + PostgreSQL) on:

- the base checkout without webhooks (`git archive` of `--base`, default the merge base
  with main, into a temp dir),
- this checkout with 0, 1 and 10 matching subscriptions (a real receiver process on
  loopback answering 200 after verifying each signature; deliveries by the worker's own
  webhooks child, as in the plain deployment).

Figures: per-job submit -> completed p50/mean and claim -> completed mean per variant
(the added cost is the difference with the base), and the delivery latency p50/p99 from
the transition's commit (`occurred_at`, the transition log's time) to the receiver's
arrival time (same host clock).

    .venv/bin/python bench/webhooks.py [--jobs 50] [--base REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import record
from bench._system import ROOT, TRIVIAL_ENV, TRIVIAL_NQL, BenchSystem, wait_until
from shared.nudge import nudge_dispatcher
from shared.store.jobs import NewJob, create_job, get_job
from shared.store.models import WebhookDelivery
from shared.store.webhooks import create_subscription
from shared.webhook_signing import event_id
from tests.processes import start_command


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def base_checkout(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dataplane-base-") as tmp:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


@contextmanager
def without_pythonpath() -> Iterator[None]:
    """The base checkout's processes must import its code, not ours."""
    saved = os.environ.pop("PYTHONPATH", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def run(label: str, jobs: int, subscriptions: int, code_root: Path = ROOT) -> dict[str, object]:
    system = BenchSystem(f"webhooks_{label}", redis_db=13, code_root=code_root,
                         extra_env={**TRIVIAL_ENV, "DATAPLANE_WEBHOOK_ALLOW_PRIVATE": "true",
                                    "DATAPLANE_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "0.25"})
    receiver_dir = system.tmp / "receiver"
    receiver_dir.mkdir()
    receiver = start_command("receiver", [sys.executable, "-m", "tests.webhooks.receiver",
                                          str(receiver_dir)], {}, system.tmp / "logs")
    system.processes.append(receiver)
    latencies: list[float] = []
    claim_to_done: list[float] = []
    try:
        wait_until(lambda: (receiver_dir / "port").exists(), timeout=30)
        port = int((receiver_dir / "port").read_text())
        secrets = {}
        for index in range(subscriptions):
            with system.store.unit_of_work() as session:
                sub = create_subscription(session, company_id=1, user_id=1, name=f"s{index}",
                                          url=f"http://127.0.0.1:{port}/ok/{index}")
                secrets[f"/ok/{index}"] = sub.secret
        (receiver_dir / "secrets.json").write_text(json.dumps(secrets))
        system.tiny_dataset()
        system.scheduler()
        workers = system.workers(1)
        for index in range(jobs + 5):
            submitted = datetime.now(UTC)
            with system.store.unit_of_work() as session:
                job, _ = create_job(session, NewJob(company_id=1, user_id=1, type="nql-forecast",
                                                    nql=TRIVIAL_NQL))
                job_id = job.id
            nudge_dispatcher(system.settings)

            def ended(job_id: object = job_id) -> bool:
                with system.store.unit_of_work() as session:
                    return get_job(session, job_id).ended_at is not None  # type: ignore[arg-type]
            wait_until(ended, timeout=60, interval=0.002)
            with system.store.unit_of_work() as session:
                job = get_job(session, job_id)
                assert job.state == "completed" and job.ended_at and job.started_at, job.failures
                if index >= 5:  # warm-up
                    latencies.append((job.ended_at - submitted).total_seconds() * 1000)
                    claim_to_done.append((job.ended_at - job.started_at).total_seconds() * 1000)
        delivery: list[float] = []
        if subscriptions:
            expected = (jobs + 5) * 3 * subscriptions
            log = receiver_dir / "requests.jsonl"

            def all_arrived() -> bool:
                return log.exists() and len(log.read_text().splitlines()) >= expected
            wait_until(all_arrived, timeout=300, interval=0.2)
            arrivals: dict[str, float] = {}
            for line in log.read_text().splitlines():
                request = json.loads(line)
                assert request["verified"], request
                arrivals.setdefault(request["event_id"], request["arrived"])
            with system.store.unit_of_work() as session:
                for row in session.query(WebhookDelivery):
                    key = str(event_id(row.subscription_id, row.transition_id))
                    delivery.append((arrivals[key] - row.occurred_at.timestamp()) * 1000)
        idle: list[float] = []
        if subscriptions == 1:
            # One job at a time with the backlog drained: the latency an event sees when
            # the delivery side is not still catching up with a burst.
            for _ in range(10):
                with system.store.unit_of_work() as session:
                    job, _ = create_job(session, NewJob(company_id=1, user_id=1,
                                                        type="nql-forecast", nql=TRIVIAL_NQL))
                nudge_dispatcher(system.settings)
                before = len(log.read_text().splitlines())

                def three_more(before: int = before) -> bool:
                    return len(log.read_text().splitlines()) >= before + 3
                wait_until(three_more, timeout=60, interval=0.05)
            seen = {json.loads(line)["event_id"]: json.loads(line)["arrived"]
                    for line in reversed(log.read_text().splitlines())}
            with system.store.unit_of_work() as session:
                for row in session.query(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(30):
                    key = str(event_id(row.subscription_id, row.transition_id))
                    idle.append((seen[key] - row.occurred_at.timestamp()) * 1000)
        cpu = delivery_cpu_seconds(workers[0].pid)
        return {"label": label, "subs": subscriptions, "p50": statistics.median(latencies),
                "cpu_per_event_ms": cpu * 1000 / (len(delivery) + len(idle)) if delivery else None,
                "idle": idle,
                "mean": statistics.fmean(latencies),
                "claim_mean": statistics.fmean(claim_to_done), "delivery": delivery}
    finally:
        system.stop()


def _merge(runs: list[dict[str, object]]) -> dict[str, object]:
    """One variant over the rounds: medians of the per-round figures, samples pooled."""
    merged = dict(runs[0])
    for key in ("p50", "mean", "claim_mean"):
        merged[key] = statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]
    cpu = [float(r["cpu_per_event_ms"]) for r in runs if r["cpu_per_event_ms"] is not None]  # type: ignore[arg-type]
    merged["cpu_per_event_ms"] = statistics.median(cpu) if cpu else None
    for key in ("delivery", "idle"):
        merged[key] = [x for r in runs for x in r[key]]  # type: ignore[attr-defined]
    return merged


def delivery_cpu_seconds(worker_pid: int) -> float:
    """CPU time (user + system) of the worker's `dataplane webhooks` child so far."""
    import psutil

    for child in psutil.Process(worker_pid).children(recursive=True):
        if "webhooks" in child.cmdline():
            times = child.cpu_times()
            return float(times.user + times.system)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base", default=None, help="revision without webhooks "
                        "(default: git merge-base HEAD main)")
    args = parser.parse_args()
    base = args.base or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT,
                                       check=True, capture_output=True, text=True).stdout.strip()
    rounds: list[list[dict[str, object]]] = []
    with base_checkout(base) as base_root:
        for _ in range(args.rounds):  # alternated, so load from other tenants hits all alike
            one = []
            with without_pythonpath():
                one.append(run("base", args.jobs, 0, base_root))
            for subs in (0, 1, 10):
                one.append(run(f"subs{subs}", args.jobs, subs))
            rounds.append(one)
    results = [_merge([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    reference = results[0]
    lines = [f"{args.jobs} sequential trivial jobs per variant (1 worker process, its webhooks "
             f"child delivering), Redis + PostgreSQL; base = {base[:7]} without webhooks; "
             f"{args.rounds} alternated rounds (medians of the rounds; latency samples pooled). "
             f"The receiver runs on the same 2 cores, so its CPU is in the cost too.",
             "",
             "| variant | submit->completed p50 | mean | added per job (mean) | claim->completed mean "
             "| delivery commit->receiver p50 | p99 | delivery CPU per event |",
             "|---|---|---|---|---|---|---|---|"]
    for result in results:
        delivery = result["delivery"]
        assert isinstance(delivery, list)
        added = float(result["mean"]) - float(reference["mean"])  # type: ignore[arg-type]
        d50 = f"{statistics.median(delivery):.0f} ms" if delivery else "-"
        d99 = f"{percentile(delivery, 0.99):.0f} ms" if delivery else "-"
        cpu_ms = result["cpu_per_event_ms"]
        cpu = f"{float(cpu_ms):.1f} ms" if cpu_ms is not None else "-"  # type: ignore[arg-type]
        name = "without webhooks (base)" if result is reference else \
            f"{result['subs']} subscription(s)"
        lines.append(f"| {name} | {result['p50']:.1f} ms | {result['mean']:.1f} ms | "
                     f"{added:+.1f} ms | {result['claim_mean']:.1f} ms | {d50} | {d99} | "
                     f"{cpu} |")
    idle = next(r["idle"] for r in results if r["subs"] == 1)
    assert isinstance(idle, list) and idle
    lines += ["", f"Delivery latency with the backlog drained (1 subscription, one job at a time, "
              f"{len(idle)} events): p50 {statistics.median(idle):.0f} ms, "
              f"p99 {percentile(idle, 0.99):.0f} ms (the relay sweeps every 250 ms)."]
    print("\n".join(lines))
    record("Webhooks (bench/webhooks.py)", lines)


if __name__ == "__main__":
    main()
