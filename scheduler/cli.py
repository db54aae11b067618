"""`dataplane scheduler`: the dispatcher, the reaper (and later refresh schedules)."""

from __future__ import annotations

import logging

import click

from dataplane.cli import require_storage, settings_of


@click.command()
@click.option("--once", is_flag=True, help="Run every duty once and exit (operators, cron).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
def scheduler(ctx: click.Context, once: bool, log_level: str) -> None:
    """Publish pending jobs to the workers' queues and requeue jobs whose worker was lost."""
    from scheduler.service import run_scheduler

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_of(ctx)
    require_storage(settings)
    run_scheduler(settings, once=once)
