"""`dataplane api [--host 127.0.0.1 --port 8000] [--workers N]`: serve the HTTP API with uvicorn.

With `--workers N` (N > 1) uvicorn starts N server processes on one socket. Each builds its
own app (`create_app()` reads the same `DATAPLANE_*` settings from the environment): its own
store connection pool, NQL compile threads and their DuckDB connections, compile memo and
nudge sender. Compiling is CPU-bound under the GIL, so processes, not threads, are what
spread submissions over the cores.
"""

from __future__ import annotations

import click

from dataplane.cli import require_storage, settings_of


@click.command()
@click.option("--host", default=None, help="Default: DATAPLANE_API_HOST (127.0.0.1).")
@click.option("--port", default=None, type=int, help="Default: DATAPLANE_API_PORT (8000).")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Server processes. Default: DATAPLANE_API_WORKERS (1).")
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None, workers: int | None,
        access_log: bool) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = settings_of(ctx)
    require_storage(settings)
    workers = workers or settings.api_workers
    host, port = host or settings.api_host, port or settings.api_port
    if workers > 1:
        # Each worker process imports the factory and builds its own app from the environment.
        uvicorn.run("api.app:create_app", factory=True, workers=workers, host=host, port=port,
                    access_log=access_log, log_level="info")
        return
    from api.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, access_log=access_log, log_level="info")
