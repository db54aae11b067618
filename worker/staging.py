"""A run's private staging folder: query output, DuckDB's spill files and pinned inputs.

`<staging_dir>/<job_id>-<attempt>/` with `out/` (the COPY target), `tmp/` (DuckDB's
temp_directory) and `in/` (input objects pinned from the host's cache: hard links). It
is deleted when the run ends, whatever the outcome (which also unpins the inputs); the
leftovers of an earlier attempt whose process died are deleted when the job is claimed
again.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path


class Staging:
    def __init__(self, staging_dir: Path, job_id: uuid.UUID, attempt: int) -> None:
        self.staging_dir = staging_dir
        self.job_id = job_id
        self.root = staging_dir / f"{job_id}-{attempt}"
        self.out = self.root / "out"
        self.tmp = self.root / "tmp"
        self.inputs = self.root / "in"

    def create(self) -> Staging:
        for folder in (self.out, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_earlier_attempts(self) -> None:
        for folder in self.staging_dir.glob(f"{self.job_id}-*"):
            if folder != self.root:
                shutil.rmtree(folder, ignore_errors=True)
