"""The retention duty: every `DATAPLANE_RETENTION_INTERVAL_SECONDS`, each materialized view
with an EXPIRE other than 'retain_everything' has its expired files dropped and its
superseded snapshots deleted (`shared/store/retention.py`), and the objects nothing lists
any more are deleted, never while a running job may have them pinned. `clock` is
injectable so tests can move time forward."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from shared.config import Settings
from shared.errors import NQLError
from shared.expire import ExpirePolicy, parse_expire
from shared.storage import Storage, StorageError
from shared.store import Store
from shared.store.datasets import SnapshotConflict, get_dataset
from shared.store.models import Dataset
from shared.store.retention import deletable_snapshots, delete_snapshots, expire_files

log = logging.getLogger(__name__)


@dataclass
class Retained:
    expired_snapshots: list[int] = field(default_factory=list)  # new `expire` snapshots
    deleted_snapshots: list[int] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)


class Retention:
    name = "retention"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, storage: Storage,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.storage = storage
        self.clock = clock
        self.interval = settings.retention_interval_seconds

    def run(self) -> None:
        done = self.sweep()
        if done.expired_snapshots or done.deleted_snapshots:
            log.info("retention: %d snapshot(s) expired files, %d deleted, %d object(s) deleted",
                     len(done.expired_snapshots), len(done.deleted_snapshots), len(done.deleted_files))

    def _views(self) -> list[tuple[int, str]]:
        with self.store.unit_of_work() as session:
            rows = session.execute(select(Dataset.id, Dataset.expire).where(Dataset.expire.is_not(None))).all()
        return [(int(r[0]), str(r[1])) for r in rows]

    def sweep(self) -> Retained:
        done = Retained()
        for dataset_id, expire in self._views():
            try:
                policy = parse_expire(expire)
            except NQLError:
                continue  # checked at compile time; an old row is not ours to judge
            if not policy.expires:
                continue
            cutoff = self.clock() - policy.max_age if policy.max_age is not None else None
            try:
                self._one(dataset_id, policy, cutoff, done)
            except SnapshotConflict:
                log.info("retention: dataset %s changed meanwhile; next round", dataset_id)
        return done

    def _one(self, dataset_id: int, policy: ExpirePolicy, cutoff: datetime | None, done: Retained) -> None:
        if cutoff is not None:
            with self.store.unit_of_work() as session:
                dataset = get_dataset(session, dataset_id)
                if dataset.write_mode == "append":
                    snapshot = expire_files(session, dataset, cutoff=cutoff)
                    if snapshot is not None:
                        done.expired_snapshots.append(snapshot.id)
        with self.store.unit_of_work() as session:
            dataset = get_dataset(session, dataset_id)
            doomed = deletable_snapshots(session, dataset, policy, cutoff=cutoff)
            keys = delete_snapshots(session, dataset, doomed)
            done.deleted_snapshots.extend(s.id for s in doomed)
        if keys:  # after the commit: a failed delete leaves orphans the orphan sweep removes
            try:
                self.storage.delete(keys)
                done.deleted_files.extend(keys)
            except StorageError:
                log.warning("retention: could not delete %d object(s); the orphan sweep will", len(keys))
