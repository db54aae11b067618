"""The thread that watches a running job: lease heartbeat, cancellation, time limit.

Every `cancel_poll_seconds` it reads the job row (as this attempt sees it) and every
`heartbeat_seconds` it extends the lease. It stops the run, by `interrupt()`ing the
job's DuckDB connection, when:

* the job was asked to stop (`pending_cancellation`, or `cancelled` by the kill endpoint);
* this run is fenced: another attempt owns the job, or the reaper requeued/failed it, or
  the lease could not be renewed for a whole lease period (store unreachable), since the
  reaper may then hand the job to someone else (Airflow's "a worker that cannot heartbeat
  kills itself");
* the run passed its deadline;
* the run's output folder grew past the output cap (`max_output_bytes`).

The first reason wins and is what the runner reports. The interrupt is repeated every
poll while the run goes on, because the runner may be between two statements when it
first fires. Polling the row (an indexed primary-key read) keeps cancellation within a
second without another moving part such as Redis pub/sub.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import duckdb

from shared.states import JobState
from shared.store import Store
from shared.store.jobs import heartbeat, run_state

log = logging.getLogger(__name__)


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    FENCED = "fenced"
    TIMED_OUT = "timed_out"
    OUTPUT_LIMIT = "output_limit"


class RunStopped(Exception):  # control flow, not an error
    """The watcher stopped this run; `reason` says why."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(f"run stopped: {reason}")
        self.reason = reason


def reason_for(state: JobState | None) -> StopReason | None:
    """What a run must do when it sees its job in `state` (None: fenced off)."""
    if state == JobState.RUNNING:
        return None
    if state in (JobState.PENDING_CANCELLATION, JobState.CANCELLED):
        return StopReason.CANCELLED
    return StopReason.FENCED


class Watcher:
    def __init__(self, store: Store, job_id: uuid.UUID, attempt: int, *, deadline: float,
                 poll_seconds: float, heartbeat_seconds: float, lease_seconds: float,
                 on_stuck: Callable[[], None] | None = None, stuck_grace: float = 30.0,
                 output: tuple[Path, int] | None = None) -> None:
        self._store = store
        self._job_id = job_id
        self._attempt = attempt
        self._deadline = deadline  # time.monotonic() value
        self._poll = poll_seconds
        self._heartbeat_every = heartbeat_seconds
        self._lease = lease_seconds
        self._on_stuck = on_stuck
        self._stuck_grace = stuck_grace
        self._output = output  # (folder, cap in bytes)
        self._reason: StopReason | None = None
        self._stopped_at: float | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._last_progress = -1
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{job_id}", daemon=True)

    # -- used by the runner ------------------------------------------------------------
    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._done.set()
        with self._lock:
            self._con = None
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def reason(self) -> StopReason | None:
        return self._reason

    def attach(self, con: duckdb.DuckDBPyConnection | None) -> None:
        """The connection to interrupt (None: nothing to interrupt)."""
        with self._lock:
            self._con = con
        if con is not None and self._reason is not None:
            self._interrupt()

    def check(self) -> None:
        """Raise RunStopped if the run must stop (called between steps)."""
        if self._reason is not None:
            raise RunStopped(self._reason)
        if time.monotonic() >= self._deadline:
            self._stop(StopReason.TIMED_OUT)
            raise RunStopped(StopReason.TIMED_OUT)

    # -- the thread ----------------------------------------------------------------------
    def _stop(self, reason: StopReason) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason
                self._stopped_at = time.monotonic()
                log.info("job %s attempt %s: stopping (%s)", self._job_id, self._attempt, reason)
        self._interrupt()

    def _interrupt(self) -> None:
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(duckdb.Error):  # closed: nothing left to stop
                    self._con.interrupt()

    def _poll_once(self, *, beat: bool) -> JobState | None:
        with self._store.unit_of_work() as session:
            if beat:
                state = heartbeat(session, self._job_id, attempt=self._attempt,
                                  lease_seconds=self._lease, progress=self._progress())
                if state is not None:
                    return state
            return run_state(session, self._job_id, attempt=self._attempt)

    def _progress(self) -> int | None:
        """DuckDB's query_progress() of the statement running now, 0-100; None when there
        is none or DuckDB cannot tell (-1). Safe from this thread, like interrupt()."""
        with self._lock:
            con = self._con
            if con is None:
                return None
            try:
                value = con.query_progress()
            except duckdb.Error:
                return None
        if value is None or value < 0:
            return None
        progress = int(min(100.0, value))
        if progress <= self._last_progress:  # monotone: a job has several statements
            return self._last_progress
        self._last_progress = progress
        return progress

    def _loop(self) -> None:
        last_ok = last_beat = time.monotonic()
        while not self._done.wait(self._poll):
            now = time.monotonic()
            if now >= self._deadline:
                self._stop(StopReason.TIMED_OUT)
            if self._output is not None and _folder_bytes(self._output[0]) > self._output[1]:
                self._stop(StopReason.OUTPUT_LIMIT)
            beat = now - last_beat >= self._heartbeat_every
            try:
                state = self._poll_once(beat=beat)
            except Exception:  # the store is down: keep trying until the lease is gone
                log.warning("job %s: cannot reach the store", self._job_id, exc_info=True)
                if now - last_ok > self._lease:
                    self._stop(StopReason.FENCED)
            else:
                last_ok = now
                if beat:
                    last_beat = now
                reason = reason_for(state)
                if reason is not None:
                    self._stop(reason)
            if self._reason is not None:
                self._interrupt()
                self._maybe_stuck(now)

    def _maybe_stuck(self, now: float) -> None:
        # DuckDB that ignores interrupt() for this long: record the timeout ourselves, so
        # the job ends "timed out" even if Celery's hard time limit kills the process next.
        if (self._reason == StopReason.TIMED_OUT and self._on_stuck is not None
                and self._stopped_at is not None and now - self._stopped_at > self._stuck_grace):
            callback, self._on_stuck = self._on_stuck, None
            try:
                callback()
            except Exception:
                log.exception("job %s: could not record the timeout", self._job_id)


def _folder_bytes(folder: Path) -> int:
    """What DuckDB has written so far (files still growing included)."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    except FileNotFoundError:
        return 0
    return total
