"""`dataplane worker --cluster shared|dedicated [--compute-pool ID] [--concurrency N]`.

Starts a Celery worker (prefork pool) consuming exactly one queue, `worker_queue(cluster,
pool)`. The slow one-time work (imports, the NQL compiler's function tables) is done
in the parent before the pool forks, so a job's time never includes it.
"""

from __future__ import annotations

import os
import socket

import click

from dataplane.cli import require_storage, settings_of
from shared.queues import worker_queue


def _warm_up() -> None:
    # Build the compiler's caches once here; its per-thread DuckDB connection is closed
    # again so that no open DuckDB database is inherited by the forked pool processes.
    from shared.nql import ResolvedDataset, StaticCatalog, compile_nql
    from shared.nql.sandbox import discard_connection

    catalog = StaticCatalog([ResolvedDataset(1, "warm", "ds_1", (("x", "BIGINT"),))])
    compile_nql('EXPLAIN SELECT "x" FROM company_data."1"', catalog)
    discard_connection()


@click.command()
@click.option("--cluster", type=click.Choice(["shared", "dedicated"]), default="shared",
              show_default=True, help="Which cluster's jobs to run.")
@click.option("--compute-pool", default=None, help="Serve only this compute pool (dedicated).")
@click.option("--concurrency", type=int, default=None,
              help="Jobs at once (default: cores / DuckDB threads, at least 1).")
@click.option("--loglevel", default="info", show_default=True)
@click.pass_context
def worker(ctx: click.Context, cluster: str, compute_pool: str | None, concurrency: int | None,
           loglevel: str) -> None:
    """Run a Celery worker for a cluster (and pool)."""
    settings = settings_of(ctx)
    try:
        queue = worker_queue(cluster, compute_pool)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    settings.ensure_dirs()
    require_storage(settings, in_child=True)  # the pool forks: keep obstore out of this process
    from shared.celery_app import app
    from worker import tasks  # noqa: F401 - registers RUN_JOB_TASK on the app

    _warm_up()
    # Webhook deliveries run in a child process of their own (worker/webhooks_cli.py),
    # started once this worker is ready, so its " ready." line is never taken for ours.
    from celery.signals import worker_ready

    from worker.webhooks_cli import start_child

    worker_ready.connect(lambda **_: start_child(settings, loglevel), weak=False)
    processes = concurrency or max(1, (os.cpu_count() or 1) // settings.duckdb_threads)
    node = f"{queue}.{os.getpid()}@{socket.gethostname()}"
    from worker.registration import install

    install(settings, name=node, queue=queue, concurrency=processes)
    app.worker_main([
        "worker", "--queues", queue, "--pool", "prefork", "--concurrency", str(processes),
        "--loglevel", loglevel, "--hostname", node,
        # No mingle/gossip: workers share nothing but the broker and the jobs table.
        "--without-mingle", "--without-gossip",
    ])
