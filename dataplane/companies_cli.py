"""`dataplane companies set|list`: a company's fair-share weight and cap on running jobs
(issue 12; the dispatcher reads them within a second, scheduler/admission.py)."""

from __future__ import annotations

import json

import click

from dataplane.cli import settings_of
from shared.config import Settings
from shared.store import Store
from shared.store.fairshare import company_rows, company_share, set_company
from shared.store.models import Company


@click.group()
def companies() -> None:
    """Per-company fair share: weight and cap on running jobs."""


@companies.command("set")
@click.option("--company-id", type=int, required=True)
@click.option("--weight", type=click.IntRange(min=1), default=None,
              help="Share of the shared cluster relative to other companies (default 1).")
@click.option("--max-running", type=click.IntRange(min=0), default=None,
              help="Cap on this company's running jobs, on any cluster; 0 = no cap.")
@click.option("--default-max-running", is_flag=True,
              help="Drop the company's own cap: the deployment default applies again.")
@click.pass_context
def companies_set(ctx: click.Context, company_id: int, weight: int | None,
                  max_running: int | None, default_max_running: bool) -> None:
    if weight is None and max_running is None and not default_max_running:
        raise click.UsageError("give --weight, --max-running or --default-max-running")
    settings = settings_of(ctx)
    store = Store.from_settings(settings)
    try:
        with store.unit_of_work() as session:
            row = set_company(session, company_id, weight=weight, max_running=max_running,
                              clear_max_running=default_max_running)
            body = _wire(settings, row)
    finally:
        store.dispose()
    click.echo(json.dumps(body))


@companies.command("list")
@click.pass_context
def companies_list(ctx: click.Context) -> None:
    """Companies with their own settings (all others: weight 1, the default cap)."""
    settings = settings_of(ctx)
    store = Store.from_settings(settings)
    try:
        with store.unit_of_work() as session:
            rows = [_wire(settings, row) for row in company_rows(session).values()]
    finally:
        store.dispose()
    click.echo(json.dumps({"companies": rows,
                           "default": {"weight": 1, "shared_max_running":
                                       settings.shared_max_running_per_company or None}},
                          indent=2))


def _wire(settings: Settings, row: Company) -> dict[str, object]:
    share = company_share(settings, row, shared_cluster=True)
    return {"company_id": row.company_id, "weight": row.weight, "max_running": row.max_running,
            "effective_shared_max_running": share.max_running}
