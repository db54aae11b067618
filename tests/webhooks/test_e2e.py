"""Webhooks end to end with real processes: `dataplane api`, `dataplane scheduler` (the
relay), `dataplane worker` (which starts its webhooks delivery child), or a separate
`dataplane webhooks`, on PostgreSQL and Redis, and a receiver process on loopback
(tests/webhooks/receiver.py) that verifies every signature."""

from __future__ import annotations

import itertools
import json
import socket
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.states import JobState
from shared.store import Store
from shared.store.jobs import transitions_of
from shared.store.models import WebhookDelivery, WebhookSubscription
from shared.store.tokens import create_token
from tests.processes import Process, start, start_command, wait_for
from tests.scheduler.cluster import Cluster

pytestmark = [pytest.mark.e2e]


@dataclass
class Receiver:
    process: Process
    directory: Path
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set_secret(self, path: str, secret: str) -> None:
        file = self.directory / "secrets.json"
        secrets = json.loads(file.read_text()) if file.exists() else {}
        secrets[path] = secret
        (self.directory / "secrets.tmp").write_text(json.dumps(secrets))
        (self.directory / "secrets.tmp").rename(file)

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        file = self.directory / "requests.jsonl"
        if not file.exists():
            return []
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        return [r for r in rows if path is None or r["path"] == path]


@dataclass
class Stack:
    cluster: Cluster
    receiver: Receiver
    api_url: str
    token: str

    def subscribe(self, path: str, **filters: Any) -> str:
        answer = httpx.post(f"{self.api_url}/webhooks", headers=self.auth, timeout=10,
                            json={"name": path, "url": self.receiver.url(path), **filters})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        self.receiver.set_secret(path, body["secret"])
        return str(body["id"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def deliveries(self, subscription_id: str) -> list[WebhookDelivery]:
        with self.cluster.store.unit_of_work() as session:
            return list(session.scalars(select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == uuid.UUID(subscription_id))
                .order_by(WebhookDelivery.id)))

    def wait_settled(self, subscription_id: str, *, timeout: float) -> list[WebhookDelivery]:
        def settled() -> bool:
            rows = self.deliveries(subscription_id)
            return bool(rows) and all(r.status != "pending" for r in rows)
        try:
            wait_for(settled, timeout=timeout, interval=0.2, message="deliveries settled")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.cluster.logs()}") from error
        return self.deliveries(subscription_id)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def make_stack(tmp_path: Path, pg_store: Store, pg_database: str, redis_url: str,
               overrides: dict[str, str], *, delivery_in_worker: bool = True) -> Iterator[Stack]:
    cluster = Cluster(pg_store, pg_database, redis_url, tmp_path / "data", tmp_path / "logs",
                      overrides={"DATAPLANE_WEBHOOK_ALLOW_PRIVATE": "true",
                                 "DATAPLANE_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "0.2",
                                 "DATAPLANE_WEBHOOK_DELIVERY_IN_WORKER":
                                     "true" if delivery_in_worker else "false",
                                 **overrides})
    (tmp_path / "data").mkdir()
    receiver_dir = tmp_path / "receiver"
    receiver_dir.mkdir()
    receiver_process = start_command("receiver", [sys.executable, "-m", "tests.webhooks.receiver",
                                                  str(receiver_dir)], {}, tmp_path / "logs")
    cluster.processes.append(receiver_process)
    try:
        wait_for(lambda: (receiver_dir / "port").exists() or not receiver_process.alive(),
                 timeout=30, message="the receiver")
        receiver = Receiver(receiver_process, receiver_dir, int((receiver_dir / "port").read_text()))
        cluster.import_dataset("tiny")
        port = _free_port()
        api = start("api", ["api", "--port", str(port), "--no-access-log"], cluster.env,
                    tmp_path / "logs")
        cluster.processes.append(api)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(lambda: healthy() or not api.alive(), timeout=60, interval=0.2,
                 message="api healthy")
        with pg_store.unit_of_work() as session:
            token = create_token(session, company_id=1, user_id=1)
        cluster.scheduler()
        cluster.worker()
        yield Stack(cluster, receiver, url, token)
    finally:
        cluster.stop_all()


@pytest.fixture
def stack(tmp_path: Path, pg_store: Store, pg_database: str, redis_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, pg_store, pg_database, redis_url, {}) as made:
        yield made


def test_every_transition_of_a_completed_failed_and_cancelled_job_once_in_order(
        stack: Stack) -> None:
    sub = stack.subscribe("/ok")
    cluster = stack.cluster
    completed = cluster.submit()
    failed = cluster.submit('EXPLAIN SELECT "no_such_column" FROM company_data.tiny')
    cancelled = cluster.submit(nudge=False)
    answer = httpx.post(f"{stack.api_url}/jobs/{cancelled}/cancel", headers=stack.auth, timeout=10)
    assert answer.status_code == 200, answer.text
    jobs = cluster.wait_for_states([completed, failed, cancelled], timeout=120)
    assert [j.state for j in jobs] == ["completed", "failed", "cancelled"]
    rows = stack.wait_settled(sub, timeout=60)
    assert {r.status for r in rows} == {"delivered"}

    received = stack.receiver.requests("/ok")
    assert received and all(r["verified"] and r["status"] == 200 for r in received)
    assert all(r["content_type"] == "application/json" for r in received)
    ids = [r["event_id"] for r in received]
    assert len(ids) == len(set(ids)), "an event was delivered twice to a receiver answering 200"
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in sorted(received, key=lambda r: r["arrived"]):
        body = request["body"]
        assert body["event_id"] == request["event_id"] and body["subscription_id"] == sub
        assert body["job"]["state"] == body["state"]  # the job as it was at that commit
        by_job[body["job"]["job_id"]].append(body)
    with cluster.store.unit_of_work() as session:
        for job_id in (completed, failed, cancelled):
            log = [(t.from_state, t.to_state) for t in transitions_of(session, job_id)]
            got = [(b["previous_state"], b["state"]) for b in by_job[str(job_id)]]
            assert got == log, (job_id, got, log)
    assert by_job[str(failed)][-1]["job"]["failures"], "the failed event carries failures[]"
    assert by_job[str(completed)][-1]["job"]["ended_at"] is not None

    listed = httpx.get(f"{stack.api_url}/webhooks/{sub}/deliveries", headers=stack.auth,
                       timeout=10).json()
    assert listed["total_records"] == len(received)
    assert {(r["status"], r["attempts"], r["last_status_code"]) for r in listed["records"]} == {
        ("delivered", 1, 200)}


RETRY_SETTINGS = {
    "DATAPLANE_WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    "DATAPLANE_WEBHOOK_RETRY_MAX_HOURS": "0.002",  # 7.2 s: attempts at ~0, .5, 1.5, 3.5 s
    "DATAPLANE_WEBHOOK_TIMEOUT_SECONDS": "1",
    "DATAPLANE_WEBHOOK_DISABLE_AFTER_FAILURES": "2",
    "DATAPLANE_WEBHOOK_LEASE_SECONDS": "5",
}


@pytest.fixture
def retry_stack(tmp_path: Path, pg_store: Store, pg_database: str,
                redis_url: str) -> Iterator[Stack]:
    with make_stack(tmp_path, pg_store, pg_database, redis_url, RETRY_SETTINGS) as made:
        yield made


def test_failing_receivers_follow_the_back_off_and_the_dead_one_is_disabled(
        retry_stack: Stack) -> None:
    stack, cluster = retry_stack, retry_stack.cluster
    flaky = stack.subscribe("/fail-first/2", states=["completed"])
    slow = stack.subscribe("/sleep/3", states=["completed"])
    dead = stack.subscribe("/status/500", states=["completed"])
    jobs = [cluster.submit() for _ in range(2)]
    cluster.wait_for_states(jobs, [JobState.COMPLETED], timeout=120)

    flaky_rows = stack.wait_settled(flaky, timeout=60)
    assert {(r.status, r.attempts) for r in flaky_rows} == {("delivered", 3)}
    attempts: dict[str, list[float]] = defaultdict(list)
    for request in stack.receiver.requests("/fail-first/2"):
        attempts[request["event_id"]].append(request["arrived"])
    assert len(attempts) == 2
    for times in attempts.values():
        assert len(times) == 3
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # base 0.5 s doubling, -20% jitter at most: never sooner than 0.4 s, then 0.8 s.
        assert gaps[0] >= 0.4 and gaps[1] >= 0.8, gaps

    for rows in (stack.wait_settled(slow, timeout=60), stack.wait_settled(dead, timeout=60)):
        assert {r.status for r in rows} == {"failed"}
        assert all(r.attempts >= 3 for r in rows)
    slow_rows = stack.deliveries(slow)
    assert all("no answer within 1s" in (r.last_error or "") for r in slow_rows)
    assert all(r.last_status_code == 500 for r in stack.deliveries(dead))
    with cluster.store.unit_of_work() as session:
        for sub in (slow, dead):
            row = session.get_one(WebhookSubscription, uuid.UUID(sub))
            assert not row.enabled and "2 failed deliveries in a row" in (row.disabled_reason or "")
    shown = httpx.get(f"{stack.api_url}/webhooks/{dead}", headers=stack.auth, timeout=10).json()
    assert shown["enabled"] is False and "failed deliveries" in shown["disabled_reason"]
    # A disabled subscription gets no more events.
    more = cluster.submit()
    cluster.wait_for_states([more], [JobState.COMPLETED], timeout=120)
    assert len(stack.deliveries(dead)) == 2
    assert len(stack.wait_settled(flaky, timeout=60)) == 3


def test_a_slow_receiver_never_holds_up_a_job(tmp_path: Path, pg_store: Store,
                                              pg_database: str, redis_url: str) -> None:
    # The receiver holds each request 20 s; one delivery thread, so it stays blocked.
    with make_stack(tmp_path, pg_store, pg_database, redis_url,
                    {"DATAPLANE_WEBHOOK_TIMEOUT_SECONDS": "15",
                     "DATAPLANE_WEBHOOK_DELIVERY_CONCURRENCY": "1"}) as stack:
        sub = stack.subscribe("/sleep/20")
        cluster = stack.cluster
        first_job = cluster.submit()
        wait_for(lambda: bool(stack.receiver.requests("/sleep/20")), timeout=60,
                 message="the first event on the wire")
        # The only delivery thread now waits on the receiver: jobs still run.
        jobs = [cluster.submit() for _ in range(3)]
        done = cluster.wait_for_states([first_job, *jobs], [JobState.COMPLETED], timeout=120)
        first = stack.deliveries(sub)[0]
        assert first.status == "pending" and first.attempts == 0, "still on the wire"
        assert len(stack.receiver.requests("/sleep/20")) == 1
        assert all(j.ended_at is not None for j in done)


def test_killing_the_delivery_process_mid_backlog_loses_nothing(
        tmp_path: Path, pg_store: Store, pg_database: str, redis_url: str) -> None:
    with make_stack(tmp_path, pg_store, pg_database, redis_url,
                    {"DATAPLANE_WEBHOOK_LEASE_SECONDS": "3"}, delivery_in_worker=False) as stack:
        cluster = stack.cluster
        sub = stack.subscribe("/sleep/0.3")
        jobs = [cluster.submit() for _ in range(8)]
        cluster.wait_for_states(jobs, [JobState.COMPLETED], timeout=180)
        assert stack.receiver.requests() == []  # no delivery process yet: a backlog
        expected = len(stack.deliveries(sub))
        assert expected == 8 * 3

        delivery = start("webhooks", ["webhooks", "--concurrency", "2"], cluster.env,
                         tmp_path / "logs")
        cluster.processes.append(delivery)
        wait_for(lambda: len(stack.receiver.requests()) >= 6, timeout=60,
                 message="part of the backlog delivered")
        delivery.kill()
        partly = len({r["event_id"] for r in stack.receiver.requests()})
        assert partly < expected

        again = start("webhooks", ["webhooks", "--concurrency", "2"], cluster.env,
                      tmp_path / "logs")
        cluster.processes.append(again)
        rows = stack.wait_settled(sub, timeout=120)
        assert {r.status for r in rows} == {"delivered"}
        received = stack.receiver.requests()
        bodies: dict[str, list[str]] = defaultdict(list)
        for request in received:
            bodies[request["event_id"]].append(json.dumps(request["body"], sort_keys=True))
        assert len(bodies) == expected  # every event arrived
        for copies in bodies.values():  # a duplicate is the very same event
            assert len(set(copies)) == 1
        # Per job, first arrivals follow the transition order.
        firsts: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        for request in sorted(received, key=lambda r: r["arrived"]):
            if request["event_id"] not in seen:
                seen.add(request["event_id"])
                firsts[request["body"]["job"]["job_id"]].append(request["body"]["state"])
        assert all(states == ["pending", "running", "completed"] for states in firsts.values())


def test_a_killed_delivery_child_is_started_again(stack: Stack) -> None:
    import psutil

    worker = next(p for p in stack.cluster.processes if p.name.startswith("worker"))

    def delivery_children() -> list[psutil.Process]:
        found = []
        for child in psutil.Process(worker.pid).children():
            try:  # the killed child is a zombie until the worker reaps it
                if child.status() != psutil.STATUS_ZOMBIE and "webhooks" in child.cmdline():
                    found.append(child)
            except psutil.Error:
                continue
        return found
    wait_for(lambda: len(delivery_children()) == 1, timeout=60, message="the delivery child")
    first = delivery_children()[0]
    first.kill()
    wait_for(lambda: [p.pid for p in delivery_children()] not in ([], [first.pid]),
             timeout=60, message="a new delivery child")
    sub = stack.subscribe("/ok", states=["completed"])
    job = stack.cluster.submit()
    stack.cluster.wait_for_states([job], [JobState.COMPLETED], timeout=120)
    assert [r.status for r in stack.wait_settled(sub, timeout=60)] == ["delivered"]
