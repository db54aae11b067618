"""`GET /metrics`: Prometheus text exposition, computed from the jobs store and the broker
at scrape time (the store is the source of truth; nothing is kept in this process, so
every API replica reports the same numbers).

    dataplane_jobs{state,type}                       gauge: jobs in each state
    dataplane_queue_depth{queue,priority}            gauge: messages waiting (Redis LLEN)
    dataplane_oldest_pending_job_age_seconds         gauge: 0 when nothing is pending
    dataplane_job_duration_seconds{type,state}       histogram: started_at -> ended_at of
                                                     ended jobs (cumulative over all of them)
    dataplane_refresh_schedules{status}, dataplane_refresh_schedules_overdue,
    dataplane_refresh_schedule_max_overdue_seconds   refresh schedules and their lateness
                                                     (from `api.routes.schedules`)
    dataplane_webhook_deliveries{outcome}            webhook deliveries: pending, delivered, failed
    dataplane_webhook_oldest_undelivered_age_seconds age of the oldest pending webhook event

Fair share (api/fairshare_metrics.py) adds per-company queued/running gauges labelled by
company id only, queue capacity and in-flight gauges, and a queue-wait histogram. The
endpoint is for operators and shows no tenant's data beyond those counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlalchemy.orm import Session

from api.routes.schedules import schedule_lines
from shared.config import Settings
from shared.queues import DEDICATED_QUEUE, SHARED_QUEUE
from shared.states import JobState, JobType
from shared.store.models import Job
from shared.store.types import utcnow
from shared.store.webhooks import delivery_counts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# kombu's Redis transport keeps priority levels in sibling lists: "<queue>\x06\x16<step>".
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
QUEUE_KEY_PATTERN = "dataplane.*"
BROKER_TIMEOUT_SECONDS = 1.0


def _labels(**labels: Any) -> str:
    def escape(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, kind: str, help_: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]


def _duration_seconds(session: Session) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", Job.ended_at - Job.started_at)  # type: ignore[return-value]
    # SQLite keeps naive UTC text; julianday() reads it.
    return (func.julianday(Job.ended_at) - func.julianday(Job.started_at)) * literal_column("86400.0")


def job_lines(session: Session) -> list[str]:
    counts: dict[tuple[str, str], int] = {(s, t): 0 for s in JobState for t in JobType}
    for state, type_, count in session.execute(
            select(Job.state, Job.type, func.count()).group_by(Job.state, Job.type)):
        counts[(state, type_)] = count
    lines = _family("dataplane_jobs", "gauge", "Jobs by state and type.",
                    (f"dataplane_jobs{_labels(state=s, type=t)} {n}"
                     for (s, t), n in sorted(counts.items())))

    oldest = session.scalar(select(func.min(Job.created_at))
                            .where(Job.state == JobState.PENDING.value))
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
    lines += _family("dataplane_oldest_pending_job_age_seconds", "gauge",
                     "Age of the oldest pending job (0 when none).",
                     [f"dataplane_oldest_pending_job_age_seconds {age:.3f}"])

    duration = _duration_seconds(session)
    bucket_sums = [func.sum(case((duration <= b, 1), else_=0)) for b in DURATION_BUCKETS]
    rows = session.execute(
        select(Job.type, Job.state, func.count(), func.coalesce(func.sum(duration), 0),
               *bucket_sums)
        .where(Job.ended_at.is_not(None), Job.started_at.is_not(None))
        .group_by(Job.type, Job.state).order_by(Job.type, Job.state)).all()
    lines += _family("dataplane_job_duration_seconds", "histogram",
                     "Run time (started_at to ended_at) of ended jobs.",
                     (line for row in rows for line in _histogram(row)))
    return lines


def histogram_lines(name: str, labels: dict[str, Any], bounds: Sequence[Any], count: int, total: Any,
                    buckets: Sequence[Any]) -> list[str]:
    """One Prometheus histogram series: cumulative buckets, +Inf, sum and count."""
    out = [f"{name}_bucket{_labels(**labels, le=le)} {int(n or 0)}"
           for le, n in zip(bounds, buckets, strict=True)]
    out.append(f"{name}_bucket{_labels(**labels, le='+Inf')} {count}")
    out.append(f"{name}_sum{_labels(**labels)} {float(total):.3f}")
    out.append(f"{name}_count{_labels(**labels)} {count}")
    return out


def _histogram(row: Sequence[Any]) -> list[str]:
    type_, state, count, total, *buckets = row
    return histogram_lines("dataplane_job_duration_seconds", {"type": type_, "state": state},
                           DURATION_BUCKETS, count, total, buckets)


def queue_depths(settings: Settings) -> dict[tuple[str, str], int]:
    """(queue, priority step) -> LLEN, for every dataplane queue list in Redis (pool
    queues are found by SCAN). Empty when the broker is not Redis."""
    if not settings.uses_redis:
        return {}
    import redis

    client = redis.Redis.from_url(settings.celery_broker_url,
                                  socket_timeout=BROKER_TIMEOUT_SECONDS,
                                  socket_connect_timeout=BROKER_TIMEOUT_SECONDS)
    try:
        keys = {k.decode() for k in client.scan_iter(match=QUEUE_KEY_PATTERN, count=500,
                                                     _type="list")}
        keys |= {SHARED_QUEUE, DEDICATED_QUEUE}
        ordered = sorted(keys)
        pipe = client.pipeline(transaction=False)
        for key in ordered:
            pipe.llen(key)
        lengths = pipe.execute()
    finally:
        client.close()
    depths: dict[tuple[str, str], int] = {}
    for key, length in zip(ordered, lengths, strict=True):
        queue, _, step = key.partition(KOMBU_PRIORITY_SEPARATOR)
        depths[(queue, step or "0")] = int(length)
    return depths


def queue_lines(settings: Settings) -> list[str]:
    try:
        depths = queue_depths(settings)
        up = 1
    except Exception:  # the broker being down is itself reported, as a 0 gauge
        depths, up = {}, 0
    lines = _family("dataplane_queue_depth", "gauge",
                    "Messages waiting in each broker queue and priority step (Redis only).",
                    (f"dataplane_queue_depth{_labels(queue=q, priority=p)} {n}"
                     for (q, p), n in sorted(depths.items())))
    if settings.uses_redis:
        lines += _family("dataplane_broker_up", "gauge", "1 when the broker answered.",
                         [f"dataplane_broker_up {up}"])
    return lines


def webhook_lines(session: Session) -> list[str]:
    """Webhook deliveries by outcome and the age of the oldest undelivered event (issue 16)."""
    counts, age = delivery_counts(session)
    lines = _family("dataplane_webhook_deliveries", "gauge",
                    "Webhook deliveries by outcome (pending: not yet delivered nor given up).",
                    (f"dataplane_webhook_deliveries{_labels(outcome=k)} {n}"
                     for k, n in sorted(counts.items())))
    lines += _family("dataplane_webhook_oldest_undelivered_age_seconds", "gauge",
                     "Age of the oldest pending webhook event (0 when none).",
                     [f"dataplane_webhook_oldest_undelivered_age_seconds {age:.3f}"])
    return lines


def render(session: Session, settings: Settings) -> str:
    from api.fairshare_metrics import fair_share_lines  # imports this module's helpers

    lines = [*job_lines(session), *schedule_lines(session, settings), *queue_lines(settings),
             *webhook_lines(session), *fair_share_lines(session, settings)]
    return "\n".join(lines) + "\n"
