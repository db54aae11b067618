from __future__ import annotations

import os
import time
from pathlib import Path

from scheduler.liveness import Liveness
from scheduler.service import build_duties
from shared.config import Settings
from shared.store import Store


class _NoPublisher:
    def publish(self, message: object) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        pass


def test_liveness_duty_only_when_configured(tmp_path: Path, sqlite_database: str) -> None:
    store = Store.from_url(sqlite_database)
    try:
        plain = build_duties(Settings(data_dir=tmp_path), store, _NoPublisher())  # type: ignore[arg-type]
        assert not any(isinstance(d, Liveness) for d in plain)
        alive = tmp_path / "run" / "scheduler.alive"
        duties = build_duties(Settings(data_dir=tmp_path, scheduler_liveness_file=alive), store,
                              _NoPublisher())  # type: ignore[arg-type]
        liveness = next(d for d in duties if isinstance(d, Liveness))
    finally:
        store.dispose()
    liveness.run()
    first = alive.stat().st_mtime
    os.utime(alive, (first - 100, first - 100))
    liveness.run()
    assert alive.stat().st_mtime > first - 1
    assert time.time() - alive.stat().st_mtime < 5
