"""Storage hygiene: objects no snapshot lists, and staging folders of runs long over.

A run whose publish outcome was unknown (the store went away mid-commit), or whose worker
was killed between uploading its output and publishing it, leaves an object that no
snapshot lists. No run lives longer than the job timeout plus Celery's hard-limit margin,
so an object older than that with no snapshot naming it can never be published any more:
it is deleted. The sweep lists the bucket (or folder) itself. Objects of older snapshots
stay (snapshots are immutable history). Staging folders that old, on this host, are
leftovers of killed runs.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from shared.config import Settings
from shared.storage import Storage, dataset_of_key
from shared.store import Store
from shared.store.models import Snapshot

log = logging.getLogger(__name__)

# Beyond the job timeout: Celery's hard limit margin (60 s) and then some.
SAFETY_MARGIN_SECONDS = 600


@dataclass
class Swept:
    files: list[str] = field(default_factory=list)  # object keys
    staging: list[Path] = field(default_factory=list)


class OrphanFiles:
    name = "orphan-files"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, storage: Storage, interval: float = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.interval = interval
        self.clock = clock
        self.min_age = settings.job_timeout_seconds + SAFETY_MARGIN_SECONDS

    def run(self) -> None:
        swept = self.sweep()
        if swept.files or swept.staging:
            log.warning("deleted %d orphaned data file(s) and %d stale staging folder(s)",
                        len(swept.files), len(swept.staging))

    def sweep(self) -> Swept:
        cutoff = self.clock() - self.min_age
        swept = Swept()
        old = [info.key for info in self.storage.list()
               if info.last_modified.timestamp() < cutoff and dataset_of_key(info.key) is not None]
        if old:
            referenced = self._referenced({dataset_of_key(key) for key in old} - {None})
            orphans = [key for key in old if key not in referenced]
            self.storage.delete(orphans)
            swept.files.extend(orphans)
        if self.settings.staging_dir.is_dir():
            for folder in self.settings.staging_dir.iterdir():
                if folder.is_dir() and _mtime(folder) < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    swept.staging.append(folder)
        return swept

    def _referenced(self, dataset_ids: set[int | None]) -> set[str]:
        with self.store.unit_of_work() as session:
            lists = session.scalars(select(Snapshot.files).where(Snapshot.dataset_id.in_(dataset_ids)))
            return {name for files in lists for name in files}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
