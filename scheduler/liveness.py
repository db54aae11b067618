"""A duty that touches a file on every turn of the scheduler loop, so a container
healthcheck (or any supervisor) can tell a live scheduler from a wedged one by the
file's age. Off unless `DATAPLANE_SCHEDULER_LIVENESS_FILE` is set."""

from __future__ import annotations

from pathlib import Path


class Liveness:
    name = "liveness"
    on_nudge = False

    def __init__(self, path: Path, *, interval: float = 5.0) -> None:
        self.path = path
        self.interval = interval

    def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
