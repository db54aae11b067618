"""`dataplane` console script.

Subcommands load lazily so `dataplane worker` never imports FastAPI and
`dataplane api` never imports DuckDB; settings are read once here and passed down.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from shared.config import Settings

# name -> "module:attribute" of a click command
_HELP = {
    "db": "The jobs store's schema (db upgrade).",
    "tokens": "Create and revoke API tokens.",
    "jobs": "Inspect jobs (operators).",
    "datasets": "Import datasets.",
    "api": "Serve the HTTP API.",
    "scheduler": "Run the dispatcher, reaper and refresh schedules.",
    "worker": "Run a Celery worker for a cluster (and pool).",
    "dev": "Run everything at once on embedded defaults.",
    "submit": "Submit an NQL file as a job.",
    "results": "Print a completed job's results.",
    "webhooks": "Deliver webhook events (also started by each worker).",
    "companies": "Fair share of the clusters: a company's weight and cap.",
}
_COMMANDS = {
    "db": "dataplane.store_cli:db",
    "tokens": "dataplane.store_cli:tokens",
    "jobs": "dataplane.store_cli:jobs",
    "datasets": "dataplane.store_cli:datasets",
    "api": "api.cli:api",
    "scheduler": "scheduler.cli:scheduler",
    "worker": "worker.cli:worker",
    "dev": "dataplane.dev:dev",
    "submit": "dataplane.client_cli:submit",
    "results": "dataplane.client_cli:results",
    "webhooks": "worker.webhooks_cli:webhooks",
    "companies": "dataplane.companies_cli:companies",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Static help: listing commands must not import every subsystem.
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in sorted(_COMMANDS)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                raise click.ClickException(f"'{cmd_name}' is not available in this build") from error
            raise
        command: click.Command = getattr(module, attribute)
        return command


@click.group(cls=LazyGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """dataplane: run NQL jobs on Celery workers and DuckDB."""
    ctx.obj = Settings()


def settings_of(ctx: click.Context) -> Settings:
    obj: Any = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def require_storage(settings: Settings, *, in_child: bool = False) -> None:
    """Exit at start, with one line naming the setting, when object storage is misconfigured
    (no such bucket, refused credentials, unreachable endpoint) rather than fail every job.

    `in_child`: check from a forked child. obstore's I/O runtime does not survive a fork,
    so a process that forks workers (Celery prefork) must never start it itself."""
    message = _checked_in_child(settings) if in_child else _storage_problem(settings)
    if message:
        raise click.ClickException(message)


def _storage_problem(settings: Settings) -> str | None:
    from shared.storage import Storage, StorageError

    try:
        Storage.from_settings(settings).check()
    except (StorageError, ValueError) as error:
        return str(error)
    return None


def _checked_in_child(settings: Settings) -> str | None:
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        try:
            problem = _storage_problem(settings) or ""
        except BaseException as error:
            problem = f"object storage check failed: {error}"
        os.write(write, problem.encode()[:4000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        problem = pipe.read().decode()
    os.waitpid(pid, 0)
    return problem or None
