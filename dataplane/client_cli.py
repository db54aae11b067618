"""`dataplane submit FILE.nql [--wait]` and `dataplane results JOB_ID`: the HTTP API from a
terminal. They talk to a running API (`dataplane dev` or `dataplane api`) with a token."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

TERMINAL = {"completed", "failed", "cancelled"}

api_url_option = click.option(
    "--api-url", envvar="DATAPLANE_API_URL", default="http://127.0.0.1:8000", show_default=True,
    help="Base URL of the dataplane API (env DATAPLANE_API_URL).")
token_option = click.option(
    "--token", envvar="DATAPLANE_TOKEN", required=True,
    help="API token (env DATAPLANE_TOKEN); `dataplane tokens create` makes one.")


def _client(api_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text}
        detail = body.get("detail") or body.get("errorMessage") or body
        where = f" (line {body['line']}, column {body['column']})" if body.get("line") else ""
        raise click.ClickException(f"HTTP {response.status_code}: {detail}{where}")
    return response.json()


def render_table(result: dict[str, Any], *, max_width: int = 28) -> str:
    columns = [c["name"] for c in result["schema"]]
    rows = [[_cell(row.get(c), max_width) for c in columns] for row in result["rows"]]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), line]
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    out.append(f"({len(rows)} of {result['rowCount']} rows)")
    return "\n".join(out)


def _cell(value: Any, max_width: int) -> str:
    text = "NULL" if value is None else json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Show a live status line until the job ends, then its results.")
@click.option("--cluster", type=click.Choice(["shared", "dedicated"]), default="shared", show_default=True)
@click.option("--tag", "tags", multiple=True)
@click.option("--idempotency-key", default=None)
@api_url_option
@token_option
def submit(file: Path, wait: bool, cluster: str, tags: tuple[str, ...], idempotency_key: str | None,
           api_url: str, token: str) -> None:
    """Submit the NQL in FILE as a job."""
    body: dict[str, Any] = {"nql": file.read_text(), "execution_cluster": cluster, "tags": list(tags)}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    with _client(api_url, token) as client:
        job = _check(client.post("/nql/run", json=body))
        click.echo(f"job {job['job_id']} ({job['type']}) submitted")
        if not wait:
            return
        job = _wait(client, job["job_id"])
        if job["state"] != "completed":
            for failure in job.get("failures") or []:
                click.echo(f"  {failure['message']}", err=True)
            sys.exit(1)
        click.echo(render_table(_check(client.get(f"/jobs/{job['job_id']}/results", params={"limit": 20}))))


def _wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    last = ""
    while True:
        job: dict[str, Any] = _check(client.get(f"/jobs/{job_id}"))
        statistics = job.get("statistics") or {}
        rows = statistics.get("records_inserted")
        status = f"{job['state']:<20} {time.monotonic() - started:6.1f}s"
        if statistics.get("progress") is not None:
            status += f"  {statistics['progress']:3d}%"
        if job.get("wait_reason"):
            status += f"  ({job['wait_reason']})"
        if rows is not None:
            status += f"  {rows} rows written"
        if interactive:
            click.echo("\r" + status.ljust(60), nl=False)
        elif job["state"] != last:
            click.echo(status)
        last = job["state"]
        if job["state"] in TERMINAL:
            if interactive:
                click.echo()
            return job
        time.sleep(0.25)


@click.command()
@click.argument("job_id")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the results JSON instead of a table.")
@api_url_option
@token_option
def results(job_id: str, limit: int, offset: int, as_json: bool, api_url: str, token: str) -> None:
    """Print a completed job's results."""
    with _client(api_url, token) as client:
        page = _check(client.get(f"/jobs/{job_id}/results", params={"limit": limit, "offset": offset}))
    click.echo(json.dumps(page, indent=2) if as_json else render_table(page))
