"""`dataplane api [--host 127.0.0.1 --port 8000]`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import click

from dataplane.cli import require_storage, settings_of


@click.command()
@click.option("--host", default=None, help="Default: DATAPLANE_API_HOST (127.0.0.1).")
@click.option("--port", default=None, type=int, help="Default: DATAPLANE_API_PORT (8000).")
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None, access_log: bool) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app

    settings = settings_of(ctx)
    require_storage(settings)
    app = create_app(settings)
    uvicorn.run(app, host=host or settings.api_host, port=port or settings.api_port,
                access_log=access_log, log_level="info")
