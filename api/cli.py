"""`dataplane api [--host 127.0.0.1 --port 8000]`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import click

from dataplane.cli import settings_of


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.pass_context
def api(ctx: click.Context, host: str, port: int, access_log: bool) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app

    app = create_app(settings_of(ctx))
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
