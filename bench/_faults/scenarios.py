"""The four fault scenarios of bench/faults.py, each a function that builds its own
deployment (FaultSystem: private PostgreSQL and Redis), runs its jobs under faults and
returns a `ScenarioResult` (the invariant report plus the figures).

* `sigkill`: workers (and pool processes) SIGKILLed at random moments, restarted.
* `redis`: the broker crashes (SIGKILL, no persistence: queues emptied) and restarts.
* `postgres`: the jobs store restarts (`pg_ctl stop -m fast|immediate`, then start).
* `cancel`: request-cancellation at random moments of jobs that run a few seconds.

Jobs of the first three are small materialize-views (a self-join over the 50k-row input,
about a second each here), submitted in a window of 2 x worker slots so the workers are
always mid-job when a fault hits. Faults stop once every job is submitted and at most
one job per worker slot is still open; then every job must be terminal within
lease + 60 s of the end of the last fault.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from bench._faults.invariants import CheckReport, check_jobs, orphan_outputs, snapshot_files_missing
from bench._faults.system import FaultSystem, retrying, view_nql
from shared.states import JobState
from shared.storage import Storage
from shared.store.models import Job

log = logging.getLogger("faults")

SCENARIOS = ("sigkill", "redis", "postgres", "cancel")
DEFAULT_JOBS = {"sigkill": 200, "redis": 500, "postgres": 200, "cancel": 1000}
GRACE_SECONDS = 60  # every job terminal within lease + this after the last fault
EXTRA_WAIT_SECONDS = 120  # past the bound, how long we still wait to tell slow from stuck
MV_KEYS = (97, 31)  # ~0.3 s and ~0.8 s of query (one thread); ~1 s a job with its overhead
CANCEL_KEY = 11  # ~2 s of query; ~4 s a job with 3 at once on 2 cores


@dataclass
class Options:
    jobs: int
    workers: int = 3
    concurrency: int = 1
    lease: int = 5
    seed: int | None = None
    keep: bool = False
    max_faults: int | None = None
    kill_share: float = 0.0  # cancel scenario: share of timings using `cancel` (kill)
    drivers: int | None = None  # cancel scenario: jobs in flight at once (default slots + 1)
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class ScenarioResult:
    name: str
    title: str
    options: Options
    report: CheckReport
    events: list[Any]
    wall_seconds: float
    all_terminal_after: float | None  # seconds from the end of the last fault
    bound: float
    missing_files: list[str]
    orphans: list[str]
    setup: str
    extra: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # beyond the per-job invariants
    log_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.missing_files and not self.problems

    def lines(self) -> list[str]:
        report = self.report
        faults = Counter(e.kind for e in self.events)
        hit = sum(1 for e in self.events if e.hit_running)
        states = ", ".join(f"{s} {n}" for s, n in sorted(report.by_state().items()))
        attempts = ", ".join(f"{a}: {n}" for a, n in sorted(report.attempts().items()))
        terminal = ("never (within the wait)" if self.all_terminal_after is None
                    else f"{self.all_terminal_after:.1f} s")
        within = self.all_terminal_after is not None and self.all_terminal_after <= self.bound
        lines = [
            f"- setup: {self.setup}",
            f"- faults injected: {len(self.events)} ({', '.join(f'{k} {n}' for k, n in faults.items()) or 'none'})"
            + (f"; {hit} hit a worker mid-job" if self.name == "sigkill" else ""),
            f"- jobs: {len(report.records)} submitted; by final state: {states or 'none'}",
            f"- attempts per job: {attempts or 'none'}",
            f"- snapshots per job: max {report.max_snapshots()}; jobs with 2+: {len(report.with_two_snapshots())}",
            f"- lost: {len(report.lost)}; not terminal: {len(report.not_terminal())}; "
            f"log mismatches: {len(report.log_mismatches())}; jobs violating any invariant: "
            f"{len(report.violations)}"
            + (f" ({', '.join(f'{k} {n}' for k, n in report.violation_kinds().items())})"
               if report.violations else ""),
            f"- time to all-terminal after the last fault: {terminal} "
            f"(bound lease + {GRACE_SECONDS} s = {self.bound:.0f} s: {'ok' if within else 'EXCEEDED'})",
            f"- snapshot files missing on disk: {len(self.missing_files)}; orphan output files "
            f"(killed/fenced runs): {len(self.orphans)}",
            *self.extra,
            f"- wall time: {self.wall_seconds:.0f} s",
        ]
        failures = _failure_reasons(report)
        if failures:
            lines.insert(4, f"- failed jobs by reason: {failures}")
        retried = _retry_reasons(report)
        if retried:
            lines.insert(4, f"- runs that went back to pending, by reason: {retried}")
        for problem in self.problems:
            lines.append(f"- PROBLEM: {problem}")
        for line in report.describe(limit=10):
            lines.append(f"- VIOLATION: {line}")
        if self.missing_files:
            lines.append(f"- VIOLATION: snapshot files missing: {self.missing_files[:10]}")
        return lines


def _failure_reasons(report: CheckReport) -> str:
    reasons: Counter[str] = Counter()
    for record in report.present:
        if record.state == JobState.FAILED and record.failures:
            message = str(record.failures[-1].get("message", ""))
            reasons[_short(message)] += 1
    return "; ".join(f"{n} x {reason!r}" for reason, n in reasons.most_common(5))


def _short(message: str) -> str:
    return message.split(" (executor")[0].split(":")[0].rstrip("0123456789 ")[:80]


def _retry_reasons(report: CheckReport) -> str:
    reasons: Counter[str] = Counter()
    for record in report.present:
        for step in record.steps:
            if step.from_state == JobState.RUNNING and step.to_state == JobState.PENDING:
                reasons[f"{_short(step.reason or '')} [{step.actor.split('@')[0]}]"] += 1
    return "; ".join(f"{n} x {reason!r}" for reason, n in reasons.most_common(5))


# --- helpers shared by the load-under-fault scenarios -------------------------------------


class Submitter(threading.Thread):
    """Submits `count` jobs, keeping at most `window` of them pending (the workers stay
    busy, and a fault always lands among running jobs rather than a long backlog)."""

    def __init__(self, system: FaultSystem, count: int, make_nql: Callable[[int], str], *,
                 window: int, prefix: str) -> None:
        super().__init__(name="submitter", daemon=True)
        self.system = system
        self.count = count
        self.make_nql = make_nql
        self.window = window
        self.prefix = prefix
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            index = 0
            while index < self.count and not self.stop.is_set():
                try:
                    room = self.window - self.system.pending_count()
                except Exception:  # the store is restarting: the API would answer 503
                    time.sleep(0.2)
                    continue
                for _ in range(max(0, min(room, self.count - index))):
                    self.system.submit(self.make_nql(index), f"{self.prefix}-{index}")
                    index += 1
                time.sleep(0.1)
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()


def _open_count(system: FaultSystem) -> int | None:
    try:
        return system.open_count()
    except Exception:
        return None


def _first_running(system: FaultSystem, timeout: float = 60) -> None:
    """Wait until some job runs, so the first fault lands mid-job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with system.db().unit_of_work() as session:
                if session.scalar(select(func.count(Job.id)).where(Job.state == JobState.RUNNING.value)):
                    return
        except Exception:  # the store is restarting
            pass
        time.sleep(0.05)


def _inject_during(system: FaultSystem, submitter: Submitter, opts: Options,
                   inject: Callable[[], None], interval: tuple[float, float]) -> None:
    """Inject faults at random moments until the run is nearly done."""
    _first_running(system)
    time.sleep(system.rng.uniform(0.2, 1.5))
    while True:
        inject()
        if opts.max_faults is not None and len(system.events) >= opts.max_faults:
            return
        pause_until = time.monotonic() + system.rng.uniform(*interval)
        while time.monotonic() < pause_until:
            time.sleep(0.1)
        remaining = _open_count(system)
        if submitter.done.is_set() and remaining is not None and remaining <= system.slots:
            return


def _settle(system: FaultSystem, opts: Options, name: str, title: str, setup: str,
            started: float, *, problems: list[str] | None = None,
            extra: list[str] | None = None) -> ScenarioResult:
    """Wait for every job to be terminal (bound: lease + 60 s after the last fault),
    then check the invariants."""
    bound = opts.lease + GRACE_SECONDS
    last = max((e.over for e in system.events), default=time.monotonic())
    done_at = system.wait_terminal(max(1.0, last + bound - time.monotonic()))
    problems = list(problems or [])
    if done_at is None:
        # Past the bound: tell "slow" from "stuck" for the report.
        late = system.wait_terminal(EXTRA_WAIT_SECONDS)
        still = _open_count(system)
        problems.append(
            f"jobs not terminal within lease + {GRACE_SECONDS} s of the last fault"
            + (f"; all terminal {late - last:.1f} s after it" if late is not None
               else f"; {still} still open {bound + EXTRA_WAIT_SECONDS:.0f} s after it"))
    report = retrying(lambda: check_jobs(system.db(), system.submitted), what="check")
    storage = Storage.from_settings(system.settings)
    result = ScenarioResult(
        name=name, title=title, options=opts, report=report, events=list(system.events),
        wall_seconds=time.monotonic() - started,
        all_terminal_after=None if done_at is None else max(0.0, done_at - last), bound=bound,
        missing_files=snapshot_files_missing(storage, report),
        orphans=orphan_outputs(storage, report), setup=setup, extra=list(extra or []),
        problems=problems, log_dir=str(system.log_dir))
    dead = _dead_workers(system)
    result.problems.extend(f"worker died on its own: {d}" for d in dead)
    if not result.ok:
        system.failed = True  # keep the logs and the database directory
        result.problems.append(f"logs kept in {system.root} (PostgreSQL data in {system.postgres.root})")
    return result


def _setup_line(system: FaultSystem, jobs: str) -> str:
    env = system.env
    return (f"{system.workers} workers x {system.concurrency} process, private PostgreSQL 15 and "
            f"Redis (no persistence), lease {env['DATAPLANE_LEASE_SECONDS']} s, reaper every "
            f"{env['DATAPLANE_REAPER_INTERVAL_SECONDS']} s, republish after "
            f"{env['DATAPLANE_REPUBLISH_AFTER_SECONDS']} s, max attempts "
            f"{env.get('DATAPLANE_MAX_ATTEMPTS', '3')}, DuckDB 1 thread; {jobs}")


def _system(name: str, opts: Options) -> FaultSystem:
    return FaultSystem(name, workers=opts.workers, concurrency=opts.concurrency,
                       lease_seconds=opts.lease, overrides=dict(opts.overrides), keep=opts.keep,
                       seed=opts.seed)


def _mv(system: FaultSystem, prefix: str) -> Callable[[int], str]:
    return lambda index: view_nql(f"{prefix}_{index}", system.rng.choice(MV_KEYS))


def _dead_workers(system: FaultSystem) -> list[str]:
    return [f"{p.name} (pid {p.pid}) exited with {p.popen.returncode}: {p.log()[-400:]!r}"
            for p in system.worker_processes if not p.alive()]


def _run_under_faults(name: str, title: str, opts: Options, *, interval: tuple[float, float],
                      inject: Callable[[FaultSystem], None],
                      describe: Callable[[FaultSystem], list[str]] | None = None) -> ScenarioResult:
    started = time.monotonic()
    with _system(name, opts) as system:
        submitter = Submitter(system, opts.jobs, _mv(system, name), window=2 * system.slots, prefix=name)
        submitter.start()
        try:
            _inject_during(system, submitter, opts, lambda: inject(system), interval)
        finally:
            submitter.done.wait(timeout=600)
            submitter.stop.set()
        problems = []
        if submitter.error is not None:
            problems.append(f"submitter failed: {submitter.error!r}")
        return _settle(system, opts, name, title,
                       _setup_line(system, "jobs: materialize-view self-joins of a 50k-row dataset, "
                                           "~1 s each"), started, problems=problems,
                       extra=describe(system) if describe else None)


# --- the scenarios ------------------------------------------------------------------------


def run_sigkill(opts: Options) -> ScenarioResult:
    """SIGKILL a whole worker (process group: a lost host) or one pool process (an OOM
    kill) at random moments; a killed worker is started again at once."""
    def inject(system: FaultSystem) -> None:
        index = system.rng.randrange(system.workers)
        if system.rng.random() < 0.3 and system.sigkill_child(index) is not None:
            return
        system.sigkill_worker(index)

    return _run_under_faults("sigkill", f"worker SIGKILL at random moments ({opts.jobs} jobs)", opts,
                             interval=(0.5, 3.0), inject=inject)


def run_redis(opts: Options) -> ScenarioResult:
    """Crash the broker (SIGKILL, no persistence: every queued and unacked message is
    gone), keep it down 0-2 s, start it again on the same port."""
    downs: list[float] = []

    def inject(system: FaultSystem) -> None:
        down = system.rng.uniform(0.0, 2.0)
        event = system.fault("redis_restart", f"down {down:.1f} s")
        system.redis.restart(down_seconds=down)
        event.end = time.monotonic()
        downs.append(down)

    def describe(_: FaultSystem) -> list[str]:
        if not downs:
            return []
        return [f"- broker down per restart: mean {statistics.mean(downs):.1f} s, max {max(downs):.1f} s"]

    return _run_under_faults("redis", f"Redis restart during {opts.jobs} jobs", opts,
                             interval=(4.0, 10.0), inject=inject, describe=describe)


def run_postgres(opts: Options) -> ScenarioResult:
    """Restart the jobs store: `pg_ctl stop -m fast` (sessions terminated, clean) or
    `-m immediate` (a crash: WAL replay on start), down 0.5-3 s, then start."""
    downs: list[float] = []

    def inject(system: FaultSystem) -> None:
        mode = system.rng.choice(("fast", "immediate"))
        down = system.rng.uniform(0.5, 3.0)
        event = system.fault(f"postgres_restart_{mode}", f"down {down:.1f} s")
        begun = time.monotonic()
        system.postgres.restart(mode, down_seconds=down)
        event.end = time.monotonic()
        downs.append(event.end - begun)

    def describe(_: FaultSystem) -> list[str]:
        if not downs:
            return []
        return [f"- store unreachable per restart (stop + down + start): mean {statistics.mean(downs):.1f} s, "
                f"max {max(downs):.1f} s"]

    return _run_under_faults("postgres", f"PostgreSQL restart during {opts.jobs} jobs", opts,
                             interval=(3.0, 8.0), inject=inject, describe=describe)


# --- cancellation -------------------------------------------------------------------------

CANCEL_MODES = {  # how a timing is drawn, and how often
    "pending": 0.15,  # right after submit: mostly still pending (or just being published)
    "claimed": 0.20,  # as soon as the row says running: compiling, opening DuckDB
    "running": 0.45,  # a random moment of the run: mid-query
    "finishing": 0.20,  # 0.8-1.5 x a typical run: writing, publishing, or already done
}


@dataclass
class Timing:
    job_id: uuid.UUID
    mode: str
    delay: float
    kill: bool
    changed: bool  # the request changed the job (False: it was already terminal/cancelling)
    requested_at: float
    claimed_seen_at: float | None


def _calibrate(system: FaultSystem) -> float:
    """Run one job per worker slot, uncancelled: the typical claim -> completed time."""
    ids = [system.submit(view_nql(f"calibrate_{i}", CANCEL_KEY), f"calibrate-{i}") for i in range(system.slots)]
    if system.wait_terminal(180) is None:
        raise RuntimeError(f"calibration jobs did not finish:\n{system.logs()}")
    report = check_jobs(system.db(), ids)
    runs = [(r.ended_at - r.started_at).total_seconds() for r in report.present
            if r.started_at and r.ended_at and r.state == JobState.COMPLETED]
    if not runs:
        raise RuntimeError(f"calibration jobs did not complete: {report.by_state()}\n{system.logs()}")
    return statistics.median(runs)


def _drive_one(system: FaultSystem, index: int, typical: float, opts: Options) -> Timing:
    rng = system.rng
    mode = rng.choices(list(CANCEL_MODES), weights=list(CANCEL_MODES.values()))[0]
    kill = rng.random() < opts.kill_share
    job_id = system.submit(view_nql(f"cancel_{index}", CANCEL_KEY), f"cancel-{index}")
    claimed_seen = None
    if mode == "pending":
        delay = rng.uniform(0.0, 0.05)
    else:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = retrying(lambda: system.state(job_id), what="state")
            if state != JobState.PENDING:
                claimed_seen = time.monotonic()
                break
            time.sleep(0.01)
        delay = {"claimed": lambda: rng.uniform(0.0, 0.1),
                 "running": lambda: rng.uniform(0.1, 0.9 * typical),
                 "finishing": lambda: rng.uniform(0.8 * typical, 1.5 * typical)}[mode]()
    time.sleep(delay)
    requested = time.monotonic()
    changed = system.cancel(job_id) if kill else system.request_cancellation(job_id)
    system.fault("kill" if kill else "request_cancellation", f"{mode} +{delay:.2f}s")
    # Wait for the job to end before the next one: in flight = the drivers.
    deadline = time.monotonic() + opts.lease + GRACE_SECONDS
    while time.monotonic() < deadline:
        state = retrying(lambda: system.state(job_id), what="state")
        if state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
            break
        time.sleep(0.05)
    return Timing(job_id, mode, delay, kill, changed, requested, claimed_seen)


def _landing(report: CheckReport, timing: Timing, typical: float) -> tuple[str, float | None]:
    """Where the request landed, from the transition log: the state it moved the job
    from, and for a running job how far into the run; plus the latency from the request
    to the job's end (None when the request changed nothing)."""
    record = report.records.get(timing.job_id)
    if record is None:
        return "lost", None
    moves = [s for s in record.steps if s.to_state == JobState.PENDING_CANCELLATION]
    if not moves:
        if any(s.to_state == JobState.CANCELLED and s.from_state == JobState.PENDING_CANCELLATION
               for s in record.steps):
            return "already cancelling", None
        return f"too late ({record.state} already)", None
    move = moves[0]
    latency = ((record.ended_at - move.at).total_seconds()
               if record.ended_at and move.at else None)
    if move.from_state == JobState.PENDING:
        return "pending", latency
    claims = [s for s in record.steps if s.to_state == JobState.RUNNING and s.at and move.at and s.at <= move.at]
    into = (move.at - claims[-1].at).total_seconds() if claims and move.at and claims[-1].at else 0.0
    if into < 0.15:
        return "running: just claimed (<0.15 s)", latency
    if into < 0.8 * typical:
        return "running: mid-query", latency
    return "running: finishing (>=80% of a typical run)", latency


def run_cancel(opts: Options) -> ScenarioResult:
    started = time.monotonic()
    drivers = opts.drivers or opts.workers * opts.concurrency + 1
    with _system("cancel", opts) as system:
        typical = _calibrate(system)
        timings: list[Timing] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        counter = iter(range(opts.jobs))

        def driver() -> None:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None or errors:
                    return
                try:
                    timing = _drive_one(system, index, typical, opts)
                except BaseException as error:
                    errors.append(error)
                    return
                with lock:
                    timings.append(timing)

        threads = [threading.Thread(target=driver, name=f"driver{i}", daemon=True) for i in range(drivers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        problems = [f"driver failed: {e!r}" for e in errors]
        result = _settle(system, opts, "cancel", f"{opts.jobs} random request-cancellation timings",
                         _setup_line(system, f"jobs: materialize-view self-join (k{CANCEL_KEY}), "
                                             f"typical run {typical:.1f} s (calibrated, {drivers} in flight)"),
                         started, problems=problems)
        result.extra.extend(_cancel_figures(result.report, timings, typical))
        for timing in timings:  # the bench's view must agree with the log
            record = result.report.records.get(timing.job_id)
            if record and timing.changed and not any(s.to_state in (JobState.PENDING_CANCELLATION,
                                                                     JobState.CANCELLED)
                                                     for s in record.steps):
                result.problems.append(f"job {timing.job_id}: the request returned True but the log "
                                       "has no cancellation")
                system.failed = True
        return result


def _cancel_figures(report: CheckReport, timings: list[Timing], typical: float) -> list[str]:
    landed: Counter[tuple[str, str]] = Counter()
    latencies: dict[str, list[float]] = {}
    modes = Counter(t.mode for t in timings)
    for timing in timings:
        where, latency = _landing(report, timing, typical)
        record = report.records.get(timing.job_id)
        landed[(where, record.state if record else "lost")] += 1
        if latency is not None:
            latencies.setdefault(where.split(":")[0], []).append(latency)
    lines = [f"- timings drawn: {', '.join(f'{m} {n}' for m, n in modes.items())}"
             f" ({sum(t.kill for t in timings)} of them `cancel` (kill), the rest request-cancellation)",
             "- where the request landed (from the transition log) -> final state:"]
    for (where, state), count in sorted(landed.items()):
        lines.append(f"  - {where} -> {state}: {count}")
    for where, values in sorted(latencies.items()):
        values.sort()
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        lines.append(f"- request -> terminal, landed {where}: p50 {statistics.median(values) * 1000:.0f} ms, "
                     f"p95 {p95 * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms (n={len(values)})")
    return lines


RUNNERS: dict[str, Callable[[Options], ScenarioResult]] = {
    "sigkill": run_sigkill, "redis": run_redis, "postgres": run_postgres, "cancel": run_cancel,
}
