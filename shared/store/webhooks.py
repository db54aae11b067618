"""Webhook subscriptions and their delivery outbox (issue 16).

Outbox: in the transition's own transaction
--------------------------------------------
`enqueue_deliveries` runs inside `jobs._log`, right after the transition-log row is
inserted, as one `INSERT INTO webhook_deliveries ... SELECT` over the company's enabled
subscriptions whose filters match. So a delivery exists if and only if its transition
committed: nothing to lose between the two, and (subscription_id, transition_id) is
unique, so one transition can never produce two events for a subscription. A relay
reading `job_transitions` by id with a cursor was not chosen: ids come from a sequence
and commit out of order, so a cursor can step past a transition that commits later
(it would need a "safe horizon" of in-flight transactions to be correct). The cost is
one extra statement per transition (matching nothing when a company has no
subscription), measured by bench/webhooks.py; the job's wire snapshot is only rendered
when some subscription matched.

Delivery state machine (a row): pending -> delivered | failed. Who may send a pending
row is decided by a lease: `lease_for_sending` (the scheduler's relay) and
`take_lease` (the task) are compare-and-sets on `lease_token`, so a stale or duplicate
Celery message is a no-op; a sender that dies leaves a lease that expires and the relay
hands the row out again (at least once; a receiver dedupes on event_id).
Per job and subscription, only the oldest pending row is ever handed out (`_is_head`).
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from shared.errors import InvalidRequest, NotFound
from shared.states import JobState
from shared.store.db import execute_dml
from shared.store.models import Job, WebhookDelivery, WebhookSubscription
from shared.store.types import UTCDateTime, utcnow
from shared.webhook_signing import event_id
from shared.wire import iso, job_to_wire

SUBSCRIPTION_TYPE = "webhook_subscription_jobs"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_PER_PAGE = 500
EXCERPT_CHARS = 256


class SubscriptionNotFound(NotFound):
    """No such subscription for this company."""


def _match_text(values: Sequence[str]) -> str:
    return "," + ",".join(values) + "," if values else ""


# --- subscriptions --------------------------------------------------------------------


def create_subscription(session: Session, *, company_id: int, user_id: int, name: str, url: str,
                        job_ids: Sequence[uuid.UUID] = (), job_types: Sequence[str] = (),
                        states: Sequence[str] = ()) -> WebhookSubscription:
    now = utcnow()
    ids = list(dict.fromkeys(str(j) for j in job_ids))
    types = list(dict.fromkeys(job_types))
    wanted = list(dict.fromkeys(states))
    subscription = WebhookSubscription(
        id=uuid.uuid4(), company_id=company_id, user_id=user_id, name=name, url=url,
        secret="whsec_" + secrets.token_urlsafe(32), job_ids=ids, job_types=types, states=wanted,
        match_job_ids=_match_text(ids), match_job_types=_match_text(types),
        match_states=_match_text(wanted), enabled=True, consecutive_failures=0,
        created_at=now, updated_at=now)
    session.add(subscription)
    session.flush()
    return subscription


def get_subscription(session: Session, subscription_id: uuid.UUID, *,
                     company_id: int) -> WebhookSubscription:
    row = session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.id == subscription_id,
        WebhookSubscription.company_id == company_id)).one_or_none()
    if row is None:
        raise SubscriptionNotFound(f"Webhook subscription {subscription_id} not found")
    return row


def list_subscriptions(session: Session, *, company_id: int) -> list[WebhookSubscription]:
    return list(session.scalars(select(WebhookSubscription)
                                .where(WebhookSubscription.company_id == company_id)
                                .order_by(WebhookSubscription.created_at, WebhookSubscription.id)))


def delete_subscription(session: Session, subscription_id: uuid.UUID, *, company_id: int) -> None:
    get_subscription(session, subscription_id, company_id=company_id)
    # Its undelivered events go with it (ON DELETE CASCADE; said explicitly for SQLite
    # connections opened without foreign keys).
    execute_dml(session, delete(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == subscription_id))
    execute_dml(session, delete(WebhookSubscription)
                .where(WebhookSubscription.id == subscription_id))


def subscription_to_wire(row: WebhookSubscription, *, with_secret: bool = False) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "id": str(row.id), "type": SUBSCRIPTION_TYPE, "name": row.name, "url": row.url,
        "job_ids": list(row.job_ids), "job_types": list(row.job_types), "states": list(row.states),
        "enabled": row.enabled, "disabled_reason": row.disabled_reason,
        "disabled_at": iso(row.disabled_at), "consecutive_failures": row.consecutive_failures,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
    }
    if with_secret:
        wire["secret"] = row.secret
    return wire


# --- the outbox -----------------------------------------------------------------------


def _build_enqueue() -> Any:
    """The outbox INSERT ... SELECT, built once: it runs on every transition of every job,
    and building it per call cost more CPU than executing it."""
    s = WebhookSubscription
    ts = UTCDateTime()
    at = bindparam("at", type_=ts)
    matching = (
        select(s.id, Job.id, bindparam("transition_id", type_=WebhookDelivery.transition_id.type),
               bindparam("previous", type_=WebhookDelivery.previous_state.type),
               bindparam("state", type_=WebhookDelivery.state.type), at,
               literal(PENDING), literal(0), at, at)
        .select_from(s).join(Job, Job.company_id == s.company_id)
        .where(Job.id == bindparam("job_id", type_=Job.id.type), s.enabled.is_(True),
               or_(s.match_states == "", s.match_states.contains(bindparam("state_pattern"))),
               or_(s.match_job_ids == "", s.match_job_ids.contains(bindparam("job_pattern"))),
               or_(s.match_job_types == "",
                   s.match_job_types.contains(literal(",") + Job.type + literal(","))))
    )
    return insert(WebhookDelivery).from_select(
        ["subscription_id", "job_id", "transition_id", "previous_state", "state", "occurred_at",
         "status", "attempts", "next_attempt_at", "created_at"], matching,
    ).returning(WebhookDelivery.id)


_ENQUEUE = _build_enqueue()


def enqueue_deliveries(session: Session, *, job_id: uuid.UUID, transition_id: int,
                       previous: JobState | None, target: JobState, at: datetime) -> int:
    """One pending delivery per enabled, matching subscription of the job's company, in
    the caller's transaction. Returns how many were made."""
    # Core execution on the session's connection: the ORM's bulk-insert path reports no
    # row count for INSERT ... SELECT, and costs more CPU.
    made = len(session.connection().execute(_ENQUEUE, {
        "job_id": job_id, "transition_id": transition_id,
        "previous": previous.value if previous else None, "state": target.value, "at": at,
        "state_pattern": f",{target.value},", "job_pattern": f",{job_id},",
    }).all())
    if made:
        # The job as GET /jobs/{id} shows it at this commit (the UPDATE already ran).
        job = session.execute(select(Job).where(Job.id == job_id)
                              .execution_options(populate_existing=True)).scalar_one()
        execute_dml(session, update(WebhookDelivery)
                    .where(WebhookDelivery.transition_id == transition_id)
                    .values(payload=json.dumps(job_to_wire(job), separators=(",", ":"))))
    return made


# --- handing deliveries out -----------------------------------------------------------


def _is_head(d: type[WebhookDelivery] | Any) -> Any:
    """No older pending delivery of the same job for the same subscription."""
    earlier = aliased(WebhookDelivery)
    return ~select(earlier.id).where(
        earlier.subscription_id == d.subscription_id, earlier.job_id == d.job_id,
        earlier.status == PENDING, earlier.transition_id < d.transition_id).exists()


def _unleased(now: datetime) -> Any:
    d = WebhookDelivery
    return or_(d.leased_until.is_(None), d.leased_until < now)


def lease_for_sending(session: Session, *, lease_seconds: float, limit: int = 200,
                      now: datetime | None = None) -> list[tuple[int, uuid.UUID]]:
    """The relay's step: lease due head deliveries; returns (delivery id, lease token)."""
    now = now or utcnow()
    d = WebhookDelivery
    due = list(session.scalars(
        select(d.id).where(d.status == PENDING, d.next_attempt_at <= now, _unleased(now),
                           _is_head(d))
        .order_by(d.id).limit(limit)))
    if not due:
        return []
    # One token for the batch: a task must present (id, token), so it still names one row.
    token = uuid.uuid4()
    won = session.scalars(update(d).where(d.id.in_(due), d.status == PENDING, _unleased(now))
                          .values(lease_token=token,
                                  leased_until=now + timedelta(seconds=lease_seconds))
                          .returning(d.id), execution_options={"synchronize_session": False})
    return sorted((delivery_id, token) for delivery_id in won)


@dataclass(frozen=True)
class Send:
    """What a task needs to send one delivery (read under its lease)."""

    delivery_id: int
    token: uuid.UUID
    subscription_id: uuid.UUID
    job_id: uuid.UUID
    url: str
    secret: str
    event_id: uuid.UUID
    transition_id: int
    occurred_at: datetime
    job: dict[str, Any]
    previous_state: str | None
    state: str
    attempts: int
    created_at: datetime
    subscription_failures: int  # the subscription's failures in a row when leased


def take_lease(session: Session, delivery_id: int, token: uuid.UUID, *,
               lease_seconds: float) -> Send | None:
    """Swap the relay's token for a fresh one (so a duplicate message loses); None when
    the delivery is no longer this message's to send."""
    now = utcnow()
    d, s = WebhookDelivery, WebhookSubscription
    fresh = uuid.uuid4()
    won = execute_dml(session, update(d).where(
        d.id == delivery_id, d.status == PENDING, d.lease_token == token)
        .values(lease_token=fresh, leased_until=now + timedelta(seconds=lease_seconds)))
    if not won:
        return None
    row = session.execute(
        select(d, s.url, s.secret, s.enabled, s.consecutive_failures)
        .join(s, s.id == d.subscription_id)
        .where(d.id == delivery_id)).one()
    delivery: WebhookDelivery = row[0]
    if not row.enabled:
        execute_dml(session, update(d).where(d.id == delivery_id).values(
            status=FAILED, last_error="subscription disabled", lease_token=None,
            leased_until=None))
        return None
    return Send(delivery_id=delivery.id, token=fresh, subscription_id=delivery.subscription_id,
                job_id=delivery.job_id, url=row.url, secret=row.secret,
                event_id=event_id(delivery.subscription_id, delivery.transition_id),
                transition_id=delivery.transition_id, occurred_at=delivery.occurred_at,
                job=json.loads(delivery.payload or "{}"), previous_state=delivery.previous_state,
                state=delivery.state, attempts=delivery.attempts, created_at=delivery.created_at,
                subscription_failures=row.consecutive_failures)


def next_in_chain(session: Session, send: Send, *, lease_seconds: float) -> tuple[int, uuid.UUID] | None:
    """After `send` ended: lease the same job's next event for the same subscription when it
    is due now, so the task sends it at once instead of waiting for the relay."""
    now = utcnow()
    d = WebhookDelivery
    nxt = session.scalars(select(d.id).where(
        d.subscription_id == send.subscription_id, d.job_id == send.job_id, d.status == PENDING,
        d.next_attempt_at <= now, _unleased(now), _is_head(d)).order_by(d.transition_id).limit(1)
    ).one_or_none()
    if nxt is None:
        return None
    token = uuid.uuid4()
    won = execute_dml(session, update(d).where(d.id == nxt, d.status == PENDING, _unleased(now))
                      .values(lease_token=token,
                              leased_until=now + timedelta(seconds=lease_seconds)))
    return (nxt, token) if won else None


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    excerpt: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and self.error is None


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_hours: float
    disable_after: int

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Wait before retry number `attempts` (1 = the first retry): base * 2^(n-1), with
        +-20% jitter so many failing deliveries do not retry in lockstep."""
        jitter = (rng or random).uniform(0.8, 1.2)
        return self.base_seconds * (2 ** (attempts - 1)) * jitter


def record_outcome(session: Session, send: Send, outcome: Outcome, policy: RetryPolicy) -> str:
    """Write an attempt's outcome under the task's lease; returns the delivery's status
    ("" when the lease was lost meanwhile: someone else owns the row now)."""
    now = utcnow()
    d, s = WebhookDelivery, WebhookSubscription
    attempts = send.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts, "last_attempt_at": now, "last_status_code": outcome.status_code,
        "last_error": outcome.error, "response_excerpt": outcome.excerpt,
        "lease_token": None, "leased_until": None,
    }
    if outcome.ok:
        status = DELIVERED
        values.update(status=DELIVERED, delivered_at=now)
    else:
        wait = timedelta(seconds=policy.delay(attempts))
        if now + wait > send.occurred_at + timedelta(hours=policy.max_hours):
            status = FAILED
            values.update(status=FAILED)
        else:
            status = PENDING
            values.update(next_attempt_at=now + wait)
    won = execute_dml(session, update(d).where(
        d.id == send.delivery_id, d.status == PENDING, d.lease_token == send.token).values(**values))
    if not won:
        return ""
    # Skipped when the counter was 0 at lease time (one round trip less per event); a
    # failure given up meanwhile then stays counted until the next success.
    if status == DELIVERED and send.subscription_failures:
        execute_dml(session, update(s).where(s.id == send.subscription_id,
                                             s.consecutive_failures != 0)
                    .values(consecutive_failures=0))
    elif status == FAILED:
        failures = session.scalar(
            update(s).where(s.id == send.subscription_id)
            .values(consecutive_failures=s.consecutive_failures + 1)
            .returning(s.consecutive_failures))
        if failures is not None and failures >= policy.disable_after:
            disable(session, send.subscription_id,
                    reason=f"disabled after {failures} failed deliveries in a row "
                           f"(last: {outcome.error or f'HTTP {outcome.status_code}'})")
    return status


def disable(session: Session, subscription_id: uuid.UUID, *, reason: str) -> None:
    now = utcnow()
    s, d = WebhookSubscription, WebhookDelivery
    execute_dml(session, update(s).where(s.id == subscription_id, s.enabled.is_(True))
                .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now))
    # Its backlog is given up now rather than left to age in the outbox.
    execute_dml(session, update(d).where(d.subscription_id == subscription_id, d.status == PENDING)
                .values(status=FAILED, last_error="subscription disabled", lease_token=None,
                        leased_until=None))


# --- reading ----------------------------------------------------------------------------


def delivery_to_wire(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "event_id": str(event_id(row.subscription_id, row.transition_id)),
        "job_id": str(row.job_id), "previous_state": row.previous_state, "state": row.state,
        "occurred_at": iso(row.occurred_at), "status": row.status, "attempts": row.attempts,
        "last_status_code": row.last_status_code, "last_error": row.last_error,
        "response_excerpt": row.response_excerpt,
        "next_retry_at": iso(row.next_attempt_at) if row.status == PENDING else None,
        "last_attempt_at": iso(row.last_attempt_at), "delivered_at": iso(row.delivered_at),
    }


def list_deliveries(session: Session, subscription_id: uuid.UUID, *, company_id: int,
                    offset: int = 0, per_page: int = 100) -> dict[str, Any]:
    """Newest first, paged as GET /jobs is."""
    if per_page < 1 or per_page > MAX_PER_PAGE:
        raise InvalidRequest(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
    get_subscription(session, subscription_id, company_id=company_id)
    d = WebhookDelivery
    total = session.scalar(select(func.count(d.id)).where(d.subscription_id == subscription_id)) or 0
    rows = session.scalars(select(d).where(d.subscription_id == subscription_id)
                           .order_by(d.id.desc()).offset(offset).limit(per_page))
    return {"current_page": offset // per_page + 1, "total_records": total,
            "total_pages": (total + per_page - 1) // per_page,
            "records": [delivery_to_wire(row) for row in rows]}


def delivery_counts(session: Session) -> tuple[dict[str, int], float]:
    """(deliveries by status, age in seconds of the oldest pending event) for /metrics."""
    d = WebhookDelivery
    counts = {PENDING: 0, DELIVERED: 0, FAILED: 0}
    for status, count in session.execute(select(d.status, func.count()).group_by(d.status)):
        counts[status] = int(count)
    oldest = session.scalar(select(func.min(d.occurred_at)).where(d.status == PENDING))
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
    return counts, age

