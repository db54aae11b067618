"""Retention of interactive query results (the TD surface's bare SELECTs).

Such a query writes a result dataset of its own; DATAPLANE_QUERY_RESULT_TTL_SECONDS after
the job ended, this duty deletes that dataset's data objects and the job's msgpack.gz, then,
in one transaction, the dataset's rows (so no query can name it and find its files gone)
and marks the result expired. The API answers 410 Gone from the TTL on, whether or not this
duty has passed yet. Deleting before marking makes a crash in between harmless: the next
run deletes again (missing objects are fine) and marks.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select

from shared.config import Settings
from shared.storage import Storage
from shared.store import Store
from shared.store.models import Dataset, Snapshot
from shared.store.td import RESULT_DATASET_PREFIX, due_for_expiry, gz_key, mark_expired

log = logging.getLogger(__name__)


class ResultTtl:
    name = "result-ttl"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, storage: Storage) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.interval = settings.result_ttl_interval_seconds

    def run(self) -> None:
        if count := self.expire():
            log.info("deleted the results of %d expired interactive quer%s", count,
                     "y" if count == 1 else "ies")

    def expire(self) -> int:
        ttl = self.settings.query_result_ttl_seconds
        with self.store.unit_of_work() as session:
            due = due_for_expiry(session, ttl)
            # Only datasets named after an interactive job (its own), never a user's.
            candidates = {row.dataset_id for row in due if row.dataset_id is not None}
            owned = list(session.scalars(select(Dataset.id).where(
                Dataset.id.in_(candidates), Dataset.name.like(f"{RESULT_DATASET_PREFIX}%"))))
            files = [name for names in session.scalars(
                select(Snapshot.files).where(Snapshot.dataset_id.in_(owned))) for name in names]
        if not due:
            return 0
        self.storage.delete([*files, *(gz_key(row.job_id) for row in due)])
        with self.store.unit_of_work() as session:
            if owned:
                session.execute(delete(Snapshot).where(Snapshot.dataset_id.in_(owned)))
                session.execute(delete(Dataset).where(Dataset.id.in_(owned)))
            return mark_expired(session, [row.job_id for row in due])
