"""Disk hygiene: data files no snapshot lists, and staging folders of runs long over.

A run whose publish outcome was unknown (the store went away mid-commit), or whose worker
was killed between placing its file and publishing it, leaves a Parquet file in the
dataset's folder that no snapshot lists. No run lives longer than the job timeout plus
Celery's hard-limit margin, so a file older than that with no snapshot naming it can never
be published any more: it is deleted. Files of older snapshots stay (snapshots are
immutable history). Staging folders that old are leftovers of killed runs.
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
from shared.store import Store
from shared.store.models import Snapshot

log = logging.getLogger(__name__)

# Beyond the job timeout: Celery's hard limit margin (60 s) and then some.
SAFETY_MARGIN_SECONDS = 600


@dataclass
class Swept:
    files: list[Path] = field(default_factory=list)
    staging: list[Path] = field(default_factory=list)


class OrphanFiles:
    name = "orphan-files"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, interval: float = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
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
        datasets_dir = self.settings.datasets_dir
        old = [path for path in datasets_dir.glob("*/*.parquet") if _mtime(path) < cutoff]
        if old:
            referenced = self._referenced({int(p.parent.name) for p in old if p.parent.name.isdigit()})
            for path in old:
                if str(path.relative_to(datasets_dir)) not in referenced:
                    path.unlink(missing_ok=True)
                    swept.files.append(path)
        if self.settings.staging_dir.is_dir():
            for folder in self.settings.staging_dir.iterdir():
                if folder.is_dir() and _mtime(folder) < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
                    swept.staging.append(folder)
        return swept

    def _referenced(self, dataset_ids: set[int]) -> set[str]:
        with self.store.unit_of_work() as session:
            lists = session.scalars(select(Snapshot.files).where(Snapshot.dataset_id.in_(dataset_ids)))
            return {name for files in lists for name in files}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
