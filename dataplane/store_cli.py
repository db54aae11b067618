"""Operator commands on the jobs store: db upgrade, tokens, jobs list/show, datasets import."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import click

from dataplane.cli import settings_of
from shared.config import Settings
from shared.store import Store
from shared.store.fairshare import wait_reason
from shared.store.jobs import get_job, transitions_of
from shared.store.listing import JobFilter, JobOrder, list_jobs
from shared.store.migrate import upgrade
from shared.store.tokens import create_token, revoke_token
from shared.wire import iso, job_to_wire


def _store(ctx: click.Context) -> tuple[Settings, Store]:
    settings = settings_of(ctx)
    return settings, Store.from_settings(settings)


@click.group()
def db() -> None:
    """The jobs store's schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the Alembic migrations up to the newest."""
    settings = settings_of(ctx)
    if settings.store_url.startswith("sqlite"):
        settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.store_url)
    click.echo("database is at the newest revision")


@click.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@click.option("--company-id", type=int, required=True)
@click.option("--user-id", type=int, required=True)
@click.pass_context
def tokens_create(ctx: click.Context, company_id: int, user_id: int) -> None:
    """Create a token and print it (it is stored hashed: this is the only time it is shown)."""
    _, store = _store(ctx)
    with store.unit_of_work() as session:
        token = create_token(session, company_id=company_id, user_id=user_id)
    click.echo(token)


@tokens.command("revoke")
@click.argument("token")
@click.pass_context
def tokens_revoke(ctx: click.Context, token: str) -> None:
    _, store = _store(ctx)
    with store.unit_of_work() as session:
        revoked = revoke_token(session, token)
    click.echo("revoked" if revoked else "no such active token")


@click.group()
def jobs() -> None:
    """Inspect jobs (operators)."""


@jobs.command("list")
@click.option("--company-id", type=int, required=True)
@click.option("--state", "states", multiple=True)
@click.option("--type", "types", multiple=True)
@click.option("--tag", "tags", multiple=True)
@click.option("--per-page", type=int, default=50, show_default=True)
@click.option("--offset", type=int, default=0)
@click.pass_context
def jobs_list(ctx: click.Context, company_id: int, states: tuple[str, ...], types: tuple[str, ...],
              tags: tuple[str, ...], per_page: int, offset: int) -> None:
    _, store = _store(ctx)
    with store.unit_of_work() as session:
        page = list_jobs(session, JobFilter(company_id=company_id, states=states, types=types,
                                            tags=tags),
                         order_by=JobOrder.CREATED_AT_DESC, offset=offset, per_page=per_page)
        click.echo(f"{page.total_records} jobs, page {page.current_page}/{page.total_pages}")
        for job in page.records:
            click.echo(f"{job.id}  {job.state:<20} {job.type:<16} {iso(job.created_at)}  "
                       f"attempts={job.attempts}")


@jobs.command("show")
@click.argument("job_id", type=click.UUID)
@click.option("--transitions/--no-transitions", default=True)
@click.pass_context
def jobs_show(ctx: click.Context, job_id: uuid.UUID, transitions: bool) -> None:
    settings, store = _store(ctx)
    with store.unit_of_work() as session:
        job = get_job(session, job_id)
        body = job_to_wire(job)
        if job.state == "pending":
            body["wait_reason"] = wait_reason(session, settings, job)
        if transitions:
            body["transitions"] = [
                {"from": t.from_state, "to": t.to_state, "attempt": t.attempt, "at": iso(t.at),
                 "actor": t.actor, "reason": t.reason}
                for t in transitions_of(session, job_id)
            ]
    click.echo(json.dumps(body, indent=2))


@click.group()
def datasets() -> None:
    """Datasets."""


@datasets.command("import")
@click.option("--company-id", type=int, required=True)
@click.option("--dataset-id", type=int, default=None)
@click.option("--name", required=True)
@click.option("--price-micro-cents-per-row", type=int, default=0)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def datasets_import(ctx: click.Context, company_id: int, dataset_id: int | None, name: str,
                    price_micro_cents_per_row: int, file: Path) -> None:
    """Create a dataset from a Parquet or CSV file, with its first snapshot."""
    from worker.importer import import_dataset  # DuckDB lives on the worker side

    settings, store = _store(ctx)
    dataset = import_dataset(settings, store, company_id=company_id, dataset_id=dataset_id,
                             name=name, source=file,
                             price_micro_cents_per_row=price_micro_cents_per_row)
    click.echo(json.dumps(dataset))
