"""/metrics lines of fair share and admission control (issue 12), appended by
api/metrics.py:

    dataplane_company_jobs_queued{cluster,company_id}    gauge: pending jobs
    dataplane_company_jobs_running{cluster,company_id}   gauge: running jobs
    dataplane_queue_capacity{queue}                      gauge: live workers' concurrency
    dataplane_queue_in_flight{queue}                     gauge: published or running jobs
    dataplane_queue_wait_seconds{cluster}                histogram: created_at -> started_at
                                                         of every job that started

Company ids only (no names, no job data): the endpoint is for operators."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlalchemy.orm import Session

from api.metrics import _family, _labels, histogram_lines
from shared.config import Settings
from shared.store.fairshare import CompanyLoad, in_flight, live_capacity, load_by_company
from shared.store.models import Job

WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


def _wait_seconds(session: Session) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", Job.started_at - Job.created_at)  # type: ignore[return-value]
    return (func.julianday(Job.started_at) - func.julianday(Job.created_at)) * literal_column("86400.0")


def fair_share_lines(session: Session, settings: Settings) -> list[str]:
    loads = load_by_company(session)
    lines = _family("dataplane_company_jobs_queued", "gauge",
                    "Pending jobs per cluster and company.",
                    (f"dataplane_company_jobs_queued{_company(load)} {load.queued}"
                     for load in loads))
    lines += _family("dataplane_company_jobs_running", "gauge",
                     "Running jobs per cluster and company.",
                     (f"dataplane_company_jobs_running{_company(load)} {load.running}"
                      for load in loads))
    capacity = live_capacity(session, settings)
    flights = in_flight(session)
    lines += _family("dataplane_queue_capacity", "gauge",
                     "Total concurrency of the live workers serving each queue.",
                     (f"dataplane_queue_capacity{_labels(queue=q)} {n}"
                      for q, n in sorted(capacity.items())))
    lines += _family("dataplane_queue_in_flight", "gauge",
                     "Jobs published to or running on each queue (admission counts these).",
                     (f"dataplane_queue_in_flight{_labels(queue=q)} {sum(c.values())}"
                      for q, c in sorted(flights.items())))
    wait = _wait_seconds(session)
    buckets = [func.sum(case((wait <= b, 1), else_=0)) for b in WAIT_BUCKETS]
    rows = session.execute(
        select(Job.execution_cluster, func.count(), func.coalesce(func.sum(wait), 0), *buckets)
        .where(Job.started_at.is_not(None))
        .group_by(Job.execution_cluster).order_by(Job.execution_cluster)).all()
    lines += _family("dataplane_queue_wait_seconds", "histogram",
                     "Queue wait (created_at to started_at) of jobs that started.",
                     (line for row in rows for line in _histogram(row)))
    return lines


def _company(load: CompanyLoad) -> str:
    return _labels(cluster=load.cluster, company_id=load.company_id)


def _histogram(row: Any) -> list[str]:
    cluster, count, total, *buckets = row
    return histogram_lines("dataplane_queue_wait_seconds", {"cluster": cluster}, WAIT_BUCKETS, count, total,
                           buckets)
