"""`dataplane webhooks [--concurrency N]`: a Celery worker for the webhooks queue only,
with a threads pool (deliveries wait on the network, not the CPU). `dataplane worker`
starts one as its child (`--parent-pid`), so the plain deployment delivers with no
extra process and a slow receiver only ever holds one of these threads, never a job's
slot; run it on its own (and `DATAPLANE_WEBHOOK_DELIVERY_IN_WORKER=false` on the job
workers) to scale deliveries separately."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import click

from dataplane.cli import settings_of
from shared.config import Settings
from shared.queues import WEBHOOKS_QUEUE


def _exit_with_parent(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@click.command()
@click.option("--concurrency", type=int, default=None,
              help="Delivery threads (default DATAPLANE_WEBHOOK_DELIVERY_CONCURRENCY).")
@click.option("--loglevel", default="info", show_default=True)
@click.option("--parent-pid", type=int, default=None, hidden=True)
@click.pass_context
def webhooks(ctx: click.Context, concurrency: int | None, loglevel: str,
             parent_pid: int | None) -> None:
    """Deliver webhook events (a threads-pool Celery worker on the webhooks queue)."""
    settings = settings_of(ctx)
    settings.ensure_dirs()
    from shared.celery_app import app
    from worker import webhooks as _tasks  # noqa: F401 - registers WEBHOOK_TASK

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    threads = concurrency or settings.webhook_delivery_concurrency
    # Deliveries are short and lease-protected: let each thread have a few messages waiting
    # (the job workers' one-at-a-time reservation would add a poll's delay to every event).
    app.conf.update(worker_disable_prefetch=False, worker_prefetch_multiplier=4)
    node = f"{WEBHOOKS_QUEUE}.{os.getpid()}@{socket.gethostname()}"
    app.worker_main([
        "worker", "--queues", WEBHOOKS_QUEUE, "--pool", "threads", "--concurrency", str(threads),
        "--loglevel", loglevel, "--hostname", node, "--without-mingle", "--without-gossip",
    ])


class DeliveryChild:
    """The webhooks process a `dataplane worker` runs beside its pool (same process group,
    so stopping the worker's group stops it; it also exits when its parent is gone). Kept
    alive: a child that dies (OOM kill, crash) is started again after a short pause."""

    RESTART_PAUSE_SECONDS = 2.0

    def __init__(self, loglevel: str) -> None:
        self.loglevel = loglevel
        self._stopping = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        threading.Thread(target=self._keep_running, name="webhooks-child", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _keep_running(self) -> None:
        while not self._stopping.is_set():
            self.process = subprocess.Popen([
                sys.executable, "-m", "dataplane", "webhooks", "--loglevel", self.loglevel,
                "--parent-pid", str(os.getpid())])
            self.process.wait()
            if self._stopping.wait(self.RESTART_PAUSE_SECONDS):
                return


def start_child(settings: Settings, loglevel: str) -> DeliveryChild | None:
    if not settings.webhook_delivery_in_worker:
        return None
    from celery.signals import worker_shutting_down

    child = DeliveryChild(loglevel)
    worker_shutting_down.connect(lambda **_: child.stop(), weak=False)
    child.start()
    return child
