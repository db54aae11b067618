"""The webhook delivery task (issue 16): `WEBHOOK_TASK(delivery_id, lease)` on
`WEBHOOKS_QUEUE`. The message carries the delivery's id and the relay's lease token,
never the URL's secret or the body: both are read from the store under the lease.

Per job and subscription, events go out in transition order: the relay only hands out
the oldest pending one, and when it ends (delivered or given up) this task leases the
next one that is due and sends it at once, so a job's events follow each other without
waiting for the relay's next sweep.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from shared.celery_app import app
from shared.config import Settings
from shared.queues import WEBHOOK_TASK
from shared.store import Store
from shared.store.webhooks import PENDING, RetryPolicy, next_in_chain, record_outcome, take_lease
from shared.webhook_sender import post_event
from shared.webhook_signing import event_body

log = logging.getLogger(__name__)
MAX_CHAIN = 100  # events of one job sent back to back by one task, at most


@dataclass
class _Context:
    pid: int
    settings: Settings
    store: Store


_context: _Context | None = None


def context() -> _Context:
    global _context
    if _context is None or _context.pid != os.getpid():
        settings = Settings()
        _context = _Context(os.getpid(), settings, Store.from_settings(settings))
    return _context


def policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(base_seconds=settings.webhook_retry_base_seconds,
                       max_hours=settings.webhook_retry_max_hours,
                       disable_after=settings.webhook_disable_after_failures)


def deliver(store: Store, settings: Settings, delivery_id: int, token: uuid.UUID) -> str:
    """Send this delivery, then the job's next due events; returns the last status."""
    lease = settings.webhook_lease_seconds
    status = "skipped"
    nxt: tuple[int, uuid.UUID] | None = (delivery_id, token)
    for _ in range(MAX_CHAIN):
        if nxt is None:
            break
        with store.unit_of_work() as session:
            send = take_lease(session, nxt[0], nxt[1], lease_seconds=lease)
        if send is None:
            break
        body = event_body(subscription_id=send.subscription_id, transition_id=send.transition_id,
                          occurred_at=send.occurred_at, job=send.job,
                          previous_state=send.previous_state, state=send.state)
        outcome = post_event(send.url, secret=send.secret, event_id=str(send.event_id), body=body,
                             timeout=settings.webhook_timeout_seconds,
                             allow_private=settings.webhook_allow_private)
        with store.unit_of_work() as session:
            status = record_outcome(session, send, outcome, policy(settings))
            nxt = next_in_chain(session, send, lease_seconds=lease) if status not in (
                PENDING, "") else None
        # The subscription id and event id only: never the secret, URL credentials or body.
        log.info("webhook event %s (subscription %s, job %s, %s): attempt %d -> %s (%s)",
                 send.event_id, send.subscription_id, send.job_id, send.state, send.attempts + 1,
                 status or "lease lost", outcome.error or outcome.status_code)
    return status


@app.task(name=WEBHOOK_TASK, acks_late=False, ignore_result=True)
def deliver_task(delivery_id: int, lease: str) -> str:
    # acks_late off: a lost message costs nothing, the delivery's lease expires and the
    # relay hands it out again; a redelivered one would only find a swapped token.
    ctx = context()
    return deliver(ctx.store, ctx.settings, delivery_id, uuid.UUID(lease))
