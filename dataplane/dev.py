"""`dataplane dev`: the whole system on one machine with nothing installed but Python.

Applies migrations, makes a demo token (company 1, user 1) and a demo dataset
(`company_data."6402"`, seed-shaped, 100k rows) when they are missing, then runs the
API, the scheduler and one shared and one dedicated worker as child processes on the
embedded defaults (SQLite store, SQLite broker, data under ./.dataplane). Ctrl-C stops
them all; a second start reuses the data, the token and the dataset."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import httpx

from dataplane.cli import settings_of
from shared.config import Settings
from shared.errors import AuthenticationFailed, DatasetNotFound
from shared.store import Store
from shared.store.datasets import get_dataset
from shared.store.migrate import upgrade
from shared.store.tokens import authenticate, create_token

DEMO_COMPANY, DEMO_USER, DEMO_DATASET = 1, 1, 6402
DEMO_ROWS = 100_000
SAMPLE_REQUEST_FILE = "sample-view.json"


def ensure_token(settings: Settings, store: Store) -> str:
    """The demo token, kept in the data dir (dev only) so a restart prints the same one."""
    path = settings.resolved_data_dir / "dev-token"
    if path.exists():
        token = path.read_text().strip()
        with contextlib.suppress(AuthenticationFailed), store.unit_of_work() as session:
            authenticate(session, token)
            return token
    with store.unit_of_work() as session:
        token = create_token(session, company_id=DEMO_COMPANY, user_id=DEMO_USER)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def ensure_demo_dataset(settings: Settings, store: Store) -> None:
    try:
        with store.unit_of_work() as session:
            get_dataset(session, DEMO_DATASET, company_id=DEMO_COMPANY)
            return
    except DatasetNotFound:
        pass
    from shared.sample_data import write_seed_dataset
    from worker.importer import import_dataset

    click.echo(f"creating demo dataset company_data.\"{DEMO_DATASET}\" ({DEMO_ROWS:,} rows)...")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "seed.parquet"
        write_seed_dataset(source, DEMO_ROWS)
        import_dataset(settings, store, company_id=DEMO_COMPANY, dataset_id=DEMO_DATASET,
                       name="mobile_events", source=source)


def write_sample_request(settings: Settings) -> Path:
    """The seed's view as `sample-view.nql` (for `dataplane submit`) and as the
    `POST /nql/run` body `sample-view.json` (for `curl --data-binary @file`)."""
    from shared.sample_data import SEED_VIEW_NQL

    (settings.resolved_data_dir / "sample-view.nql").write_text(SEED_VIEW_NQL)
    path = settings.resolved_data_dir / SAMPLE_REQUEST_FILE
    path.write_text(json.dumps({"nql": SEED_VIEW_NQL}, indent=2) + "\n")
    return path


def ensure_secret_key(settings: Settings) -> str:
    """The data dir's Fernet key (`secret.key`, owner-only), made on first use."""
    from cryptography.fernet import Fernet

    path = settings.resolved_data_dir / "secret.key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


def _spawn(args: list[str], env: dict[str, str], log_dir: Path, name: str) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "dataplane", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(children: dict[str, subprocess.Popen[bytes]], timeout: float = 20) -> None:
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    for child in children.values():
        # Whatever is left of a process group (pool children) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


@click.command()
@click.option("--host", default=None, help="Default: DATAPLANE_API_HOST (127.0.0.1).")
@click.option("--port", default=None, type=int, help="Default: DATAPLANE_API_PORT (8000).")
@click.pass_context
def dev(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the API, the scheduler and a shared and a dedicated worker, on embedded defaults."""
    settings = settings_of(ctx)
    host, port = host or settings.api_host, port or settings.api_port
    settings.ensure_dirs()
    upgrade(settings.store_url)
    store = Store.from_settings(settings)
    token = ensure_token(settings, store)
    ensure_demo_dataset(settings, store)
    sample = write_sample_request(settings)
    store.dispose()

    env = dict(os.environ)
    env["DATAPLANE_DATA_DIR"] = str(settings.resolved_data_dir)
    if settings.secret_key is None:  # exports encrypt target credentials with it
        env["DATAPLANE_SECRET_KEY"] = ensure_secret_key(settings)
    env["PYTHONUNBUFFERED"] = "1"
    # Dev receivers live on localhost: allow http:// and loopback webhook URLs (issue 16).
    env.setdefault("DATAPLANE_WEBHOOK_ALLOW_PRIVATE", "true")
    log_dir = settings.resolved_data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        children["api"] = _spawn(["api", "--host", host, "--port", str(port)], env, log_dir, "api")
        children["scheduler"] = _spawn(["scheduler"], env, log_dir, "scheduler")
        children["worker-shared"] = _spawn(["worker", "--cluster", "shared", "--concurrency", "1"],
                                           env, log_dir, "worker-shared")
        children["worker-dedicated"] = _spawn(["worker", "--cluster", "dedicated", "--concurrency", "1"],
                                              env, log_dir, "worker-dedicated")
        url = f"http://{host}:{port}"
        if not _wait_healthy(url, children, lambda: stopping):
            failed = [n for n, c in children.items() if c.poll() is not None]
            raise click.ClickException(f"dataplane dev did not start ({', '.join(failed) or 'api'}); "
                                       f"see the logs in {log_dir}")
        click.echo(f"API:   {url}   (logs: {log_dir})")
        click.echo(f"Token: {token}")
        click.echo(f"Try:   curl -s -X POST {url}/nql/run -H 'Authorization: Bearer {token}' "
                   f"-H 'Content-Type: application/json' --data-binary @{sample}")
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    click.echo(f"{name} exited with {child.returncode}; stopping (see {log_dir}/{name}.log)",
                               err=True)
                    stopping = True
                    break
            time.sleep(0.2)
    finally:
        click.echo("stopping...")
        _stop(children)
    click.echo("stopped")


def _wait_healthy(url: str, children: dict[str, subprocess.Popen[bytes]], stopping: object,
                  timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():  # type: ignore[operator]
        if any(child.poll() is not None for child in children.values()):
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return True
        time.sleep(0.2)
    return False
