"""The one settings object. Read once at process start (`Settings()`), then passed down.

Every field is read from the environment with the `DATAPLANE_` prefix
(`DATAPLANE_DATABASE_URL`, `DATAPLANE_LEASE_SECONDS`, ...). The defaults need no
server at all: a SQLite jobs store and a SQLite-backed Celery broker under `data_dir`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATAPLANE_", extra="ignore")

    data_dir: Path = Field(default=Path(".dataplane"), description="Where SQLite, snapshots and staging live.")
    database_url: str = Field(default="",
        description="SQLAlchemy URL of the jobs store; default SQLite under data_dir.")
    broker_url: str = Field(default="",
        description="Celery broker URL; default an embedded SQLite broker under data_dir.")

    # Object storage (shared/storage.py): where snapshots' data files live.
    storage_url: str = Field(default="",
        description="`file:///abs/path` or `s3://bucket/prefix`; default `file://` under data_dir/datasets.")
    s3_endpoint_url: str | None = Field(default=None,
        description="Endpoint of an S3-compatible server (`http://host:port`); unset for AWS.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_access_key_id: str | None = Field(default=None,
        description="S3 access key; unset: the standard AWS environment and credential chain.")
    s3_secret_access_key: SecretStr | None = Field(default=None,
        description="S3 secret key (never logged or shown).")
    cache_max_bytes: int = Field(default=20 * 1024**3, ge=0,
        description="A worker host's input cache of object-storage files (LRU; pinned files stay).")
    max_output_bytes: int = Field(default=50 * 1024**3, ge=1,
        description="What one run may write; past it the job fails and its output is deleted.")

    lease_seconds: int = Field(default=30, ge=2,
        description="A running job's lease; the worker heartbeats at a third of it.")
    job_timeout_seconds: int = Field(default=3600, ge=1, description="Wall-clock limit of one run.")
    max_attempts: int = Field(default=3, ge=1,
        description="Runs a job gets when its worker is lost (poison-query cap).")
    retry_backoff_seconds: float = Field(default=2.0, ge=0,
        description="Base of the exponential backoff for infrastructure retries.")

    duckdb_memory_limit: str = Field(default="2GB", description="DuckDB memory_limit per job.")
    duckdb_threads: int = Field(default=2, ge=1, description="DuckDB threads per job.")
    duckdb_max_temp_directory_size: str = Field(default="20GB", description="Spill limit per job.")

    dispatch_interval_seconds: float = Field(default=1.0, gt=0,
        description="Dispatcher sweep period (nudges make it sooner).")
    reaper_interval_seconds: float = Field(default=2.0, gt=0, description="How often expired leases are looked for.")
    cancel_poll_seconds: float = Field(default=0.25, gt=0,
        description="How often a running job checks for cancellation.")

    forecast_exact_max_rows: int = Field(default=1_000_000, ge=0,
        description="Inputs up to this many rows are counted exactly.")
    forecast_sample_percent: float = Field(default=5.0, gt=0, le=100, description="Sample size above the threshold.")

    api_host: str = Field(default="127.0.0.1", description="Default address of `dataplane api` / `dataplane dev`.")
    api_port: int = Field(default=8000, ge=1, le=65535,
        description="Default port of `dataplane api` / `dataplane dev`.")
    api_workers: int = Field(default=1, ge=1,
        description="Server processes of `dataplane api` (uvicorn workers); about one per core.")
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger request bodies get 413.")

    # Dispatcher (scheduler/): lost-message recovery and bounded publishing.
    republish_after_seconds: float = Field(
        default=120.0, gt=0,
        description="A pending job published this long ago and still unclaimed is published "
                    "again (its message may be lost); the wait doubles with its time pending.")
    republish_max_seconds: float = Field(
        default=1800.0, gt=0, description="Cap of that doubling wait between republishes.")
    dispatch_batch_size: int = Field(
        default=100, ge=1, description="Jobs locked and published per dispatcher transaction.")
    publish_timeout_seconds: float = Field(
        default=2.0, gt=0,
        description="Bound on one publish (connect, send) so a dead broker cannot hang the "
                    "dispatcher.")

    # Refresh schedules (scheduler/schedules.py): an every-minute schedule is the finest,
    # so a few seconds of check period is timely enough and costs one indexed query.
    schedule_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often the scheduler looks for due refresh schedules.")
    schedule_overdue_seconds: float = Field(
        default=120.0, gt=0,
        description="An active schedule this late is counted as overdue in /metrics.")

    scheduler_liveness_file: Path | None = Field(
        default=None,
        description="If set, the scheduler touches this file on every loop (container healthchecks).")
    retention_interval_seconds: float = Field(
        default=60.0, gt=0,
        description="How often the scheduler applies materialized views' EXPIRE options.")

    # Treasure Data surface (api/td): an interactive query's result (a bare SELECT) is
    # deleted this long after the job ended, then answers 410 Gone.
    query_result_ttl_seconds: int = Field(
        default=86400, ge=1, description="Lifetime of an interactive query's result.")
    result_ttl_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often the scheduler deletes expired query results.")
    secret_key: SecretStr | None = Field(
        default=None, description="Fernet key encrypting export target credentials at rest "
                                  "(never logged or shown).")
    # Webhooks (issue 16): see shared/store/webhooks.py and worker/webhooks.py.
    webhook_allow_private: bool = Field(default=False,
        description="Allow http:// and loopback/private/link-local webhook URLs (tests, dev).")
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0,
        description="First webhook retry after this long, doubling each time (with jitter).")
    webhook_retry_max_hours: float = Field(default=24.0, gt=0,
        description="A delivery is retried for this long after its event, then marked failed.")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0,
        description="A receiver must answer 2xx within this long.")
    webhook_disable_after_failures: int = Field(default=5, ge=1,
        description="A subscription is disabled after this many failed deliveries in a row.")
    webhook_lease_seconds: float = Field(default=60.0, gt=0,
        description="A delivery handed to a task is re-sent after this long if unresolved.")
    webhook_dispatch_interval_seconds: float = Field(default=0.25, gt=0,
        description="How often the scheduler hands due deliveries to the webhooks queue.")
    webhook_delivery_concurrency: int = Field(default=8, ge=1,
        description="Delivery threads of a webhooks process.")
    webhook_delivery_in_worker: bool = Field(default=True,
        description="`dataplane worker` starts a webhooks delivery child process.")

    # Fair share and admission control on the clusters (issue 12; scheduler/admission.py).
    fair_share: bool = Field(
        default=True,
        description="Admission control with fair share between companies; off: every pending "
                    "job is published at once, priority then age (FIFO, the old behaviour).")
    admission_buffer: int = Field(
        default=1, ge=0,
        description="Jobs admitted to a queue beyond its live workers' total concurrency, so a "
                    "freed process finds its next job at the broker without waiting for us.")
    shared_max_running_per_company: int = Field(
        default=0, ge=0,
        description="Default cap on a company's running (plus admitted) jobs on the shared "
                    "cluster; 0 = no cap. Per-company: `dataplane companies set`.")
    priority_aging_seconds: float = Field(
        default=60.0, gt=0,
        description="A pending job gains one priority level per this many seconds waited, so "
                    "a low-priority job is not starved by a stream of urgent ones.")
    worker_registration_seconds: float = Field(
        default=2.0, gt=0, description="How often a worker refreshes its registration row.")
    worker_ttl_seconds: float = Field(
        default=10.0, gt=0,
        description="A worker not seen for this long no longer counts towards a queue's capacity.")

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, url: str) -> str:
        # Both spellings mean psycopg 3 (SQLAlchemy's bare `postgresql://` would pick psycopg2).
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'dataplane.sqlite'}"

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.resolved_data_dir / 'broker.sqlite'}"

    @property
    def uses_redis(self) -> bool:
        return self.celery_broker_url.startswith(("redis://", "rediss://"))

    @property
    def datasets_dir(self) -> Path:
        return self.resolved_data_dir / "datasets"

    @property
    def staging_dir(self) -> Path:
        return self.resolved_data_dir / "staging"

    @property
    def cache_dir(self) -> Path:
        return self.resolved_data_dir / "cache"

    @property
    def heartbeat_seconds(self) -> float:
        return max(self.lease_seconds / 3, 0.5)

    def ensure_dirs(self) -> None:
        for path in (self.resolved_data_dir, self.datasets_dir, self.staging_dir):
            path.mkdir(parents=True, exist_ok=True)
