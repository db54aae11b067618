"""The scheduler's webhooks relay (issue 16): every `webhook_dispatch_interval_seconds`,
lease the due deliveries (the oldest pending event of each job and subscription whose
retry time has come) and send one `WEBHOOK_TASK` message per delivery to the webhooks
queue. The message holds the delivery id and lease token only.

The lease makes this safe with several schedulers (one wins each row) and makes lost
messages harmless: a delivery whose message or sender vanished is handed out again once
its lease expires."""

from __future__ import annotations

import logging

from sqlalchemy import update

from scheduler.producer import producer_app
from shared.config import Settings
from shared.queues import WEBHOOK_TASK, WEBHOOKS_QUEUE
from shared.store import Store
from shared.store.models import WebhookDelivery
from shared.store.webhooks import lease_for_sending

log = logging.getLogger(__name__)


class WebhookRelay:
    name = "webhooks"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, batch: int = 200) -> None:
        self.settings, self.store, self.batch = settings, store, batch
        self.interval = settings.webhook_dispatch_interval_seconds
        self._app = producer_app(settings)
        self._retry_policy = {"max_retries": 1, "interval_start": 0.0, "interval_step": 0.2,
                              "interval_max": 0.2}

    def run(self) -> None:
        with self.store.unit_of_work() as session:
            leased = lease_for_sending(session, lease_seconds=self.settings.webhook_lease_seconds,
                                       limit=self.batch)
        for delivery_id, token in leased:
            try:
                self._app.send_task(WEBHOOK_TASK, kwargs={"delivery_id": delivery_id,
                                                          "lease": str(token)},
                                    queue=WEBHOOKS_QUEUE, retry=True,
                                    retry_policy=self._retry_policy)
            except Exception as error:  # give the lease back: the next sweep tries again
                log.warning("webhook delivery %s not published: %s", delivery_id, error)
                with self.store.unit_of_work() as session:
                    session.execute(update(WebhookDelivery).where(
                        WebhookDelivery.id == delivery_id, WebhookDelivery.lease_token == token)
                        .values(lease_token=None, leased_until=None))
