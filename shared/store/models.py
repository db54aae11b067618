"""SQLAlchemy 2.0 models of the jobs store: jobs, their transition log, datasets,
snapshots and API tokens. The schema is owned by the Alembic migrations in
`shared/migrations`; `Base.metadata` must always match them (a test checks it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.store.types import JSONType, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    company_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    request_source_type: Mapped[str] = mapped_column(String(32), default="api_user")
    data_plane_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    state: Mapped[str] = mapped_column(String(32), default="pending")
    type: Mapped[str] = mapped_column(String(32))
    nql: Mapped[str] = mapped_column(Text)
    # input.dataset_id: the dataset a materialize-view writes (set at submit when known).
    dataset_id: Mapped[int | None] = mapped_column(BigInteger)
    stats_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    compiled_sql: Mapped[str | None] = mapped_column(Text)

    executor: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    failures: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    compute_pool_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    execution_cluster: Mapped[str] = mapped_column(String(16), default="shared")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    retry_limit: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    infra_retries: Mapped[int] = mapped_column(Integer, default=0)
    statistics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Dispatch bookkeeping: a pending job with published_at NULL is owed a message;
    # run_after delays a retry (backoff).
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lease of the current run; the attempt number is the fencing token.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("company_id", "idempotency_key"),
        Index("ix_jobs_company_created", "company_id", "created_at"),
        Index("ix_jobs_company_updated", "company_id", "updated_at"),
        Index("ix_jobs_company_state_created", "company_id", "state", "created_at"),
        Index("ix_jobs_company_type_created", "company_id", "type", "created_at"),
        Index("ix_jobs_company_dataset", "company_id", "dataset_id"),
        Index("ix_jobs_company_data_plane", "company_id", "data_plane_id"),
        Index("ix_jobs_dispatch", "state", "published_at"),
        Index("ix_jobs_lease", "state", "lease_expires_at"),
    )


class JobTag(Base):
    """One row per (job, tag): makes `tag=` filters an index lookup on any backend.
    company_id leads the key so a tag filter reads only the caller's rows."""

    __tablename__ = "job_tags"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index("ix_job_tags_job", "job_id"),)


class JobTransition(Base):
    """Append-only log: one row per state change, written in the same transaction."""

    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_job_transitions_job_id", "job_id", "id"),)


class Dataset(Base):
    __tablename__ = "datasets"

    # Ids are global and chosen by us (or by `datasets import --dataset-id`), never a sequence,
    # so an imported id can never collide with a later generated one.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    company_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    # [[column name, DuckDB type], ...] in order.
    schema: Mapped[list[list[str]]] = mapped_column(JSONType, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    write_mode: Mapped[str] = mapped_column(String(16), default="append")
    # Price of one row for forecasts, in micro-cents USD.
    price_micro_cents_per_row: Mapped[int] = mapped_column(BigInteger, default=0)
    current_snapshot_id: Mapped[int | None] = mapped_column(BigInteger)
    # The NQL of the view that writes this dataset, when it is a materialized view.
    view_nql: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The view's EXPIRE option as its last run read it (the scheduler's retention duty
    # applies it without compiling NQL); NULL: retain everything (issue 15).
    expire: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("company_id", "name"),)


class Snapshot(Base):
    """An immutable list of Parquet files (relative to the datasets dir) and their totals."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    dataset_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("datasets.id"))
    # A job publishes at most one snapshot, ever: the database enforces it.
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    parent_snapshot_id: Mapped[int | None] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(16))
    files: Mapped[list[str]] = mapped_column(JSONType, default=list)
    added_files: Mapped[list[str]] = mapped_column(JSONType, default=list)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    added_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    column_stats: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    recalculation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # `expire` snapshots only: when each listed file was written (ISO times), so a later
    # expiry still knows once the snapshots that added them are deleted (issue 15).
    file_written_at: Mapped[dict[str, str] | None] = mapped_column(JSONType)

    __table_args__ = (Index("ix_snapshots_dataset", "dataset_id", "created_at"),)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    company_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RefreshSchedule(Base):
    """A materialized view's REFRESH_SCHEDULE, one per dataset (issue: refresh schedules)."""

    __tablename__ = "refresh_schedules"

    dataset_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    company_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    nql: Mapped[str] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(255))
    cron_zone_id: Mapped[str] = mapped_column(String(64), default="UTC")
    execution_cluster: Mapped[str] = mapped_column(String(16), default="shared")
    compute_pool_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    stats_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # active: runs on its schedule; pending/archived: does not.
    status: Mapped[str] = mapped_column(String(16), default="active")
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_refresh_schedules_due", "status", "next_run_at"),)


class TdJob(Base):
    """What the Treasure Data surface (`/v3/job/*`) knows of a job beyond our own columns:
    the query as the client sent it (a SELECT runs wrapped in a materialize-view), its
    database and engine type, and the life of an interactive query's result."""

    __tablename__ = "td_jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    company_id: Mapped[int] = mapped_column(BigInteger)
    td_type: Mapped[str] = mapped_column(String(16))
    query: Mapped[str] = mapped_column(Text)
    database: Mapped[str] = mapped_column(String(255))
    # A bare SELECT: its result dataset is the job's own and expires.
    interactive: Mapped[bool] = mapped_column(Boolean, default=False)
    # Byte length of the msgpack.gz result, once it has been written (TD's result_size).
    result_size: Mapped[int | None] = mapped_column(BigInteger)
    # Set by the retention duty once the result's data objects are deleted.
    result_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A result export target: the URL Fernet-encrypted, and its redacted form for answers.
    result_url_encrypted: Mapped[str | None] = mapped_column(Text)
    result_url_redacted: Mapped[str | None] = mapped_column(Text)
    # An export job's non-secret plan: source, bucket, prefix, format, endpoint, time range.
    export_spec: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    linked_result_export_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    result_export_target_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_td_jobs_expiry", "interactive", "result_expired_at"),)


class WebhookSubscription(Base):
    """A company's `webhook_subscription_jobs` (issue 16). The secret is kept in clear: it
    signs every delivery (HMAC), so it cannot be a one-way hash; the API shows it once.
    `match_*` hold the filters as `,a,b,` text ("" = all) so the outbox's INSERT...SELECT
    matches them with one portable LIKE on SQLite and PostgreSQL."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    company_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    job_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    job_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    states: Mapped[list[str]] = mapped_column(JSONType, default=list)
    match_job_ids: Mapped[str] = mapped_column(Text, default="")
    match_job_types: Mapped[str] = mapped_column(Text, default="")
    match_states: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Deliveries given up in a row; reset by any success. At the limit the subscription is disabled.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_webhook_subscriptions_company", "company_id", "enabled"),)


class WebhookDelivery(Base):
    """The outbox: one row per (subscription, transition), inserted in the transition's own
    transaction. `payload` is the job as GET /jobs/{id} showed it at that commit."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    transition_id: Mapped[int] = mapped_column(BigInteger)
    previous_state: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[str | None] = mapped_column(Text)
    # pending -> delivered | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who may send it now: the relay sets a token with a lease; a task must present it.
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("subscription_id", "transition_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_chain", "subscription_id", "job_id", "transition_id"),
        Index("ix_webhook_deliveries_transition", "transition_id"),
    )


class ViewProgress(Base):
    """Per materialized view and input dataset, the input snapshot the view's last
    successful run consumed: what a DELTA(TABLE ...) read starts after. Written in the
    transaction that publishes the view's snapshot (issue 15)."""

    __tablename__ = "view_progress"

    view_dataset_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    input_dataset_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Worker(Base):
    """A live Celery worker, as it registers itself (issue 12: admission control). Each
    worker upserts its row every few seconds; the dispatcher sums the concurrency of the
    rows seen recently per queue to learn how many jobs a cluster or pool can start."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # the Celery node name
    queue: Mapped[str] = mapped_column(String(255))
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_workers_queue_seen", "queue", "last_seen"),)


class Company(Base):
    """Per-company overrides of fair share (weight) and admission (cap on running jobs)."""

    __tablename__ = "companies"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    # None: the deployment's default (DATAPLANE_SHARED_MAX_RUNNING_PER_COMPANY on shared).
    max_running: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
