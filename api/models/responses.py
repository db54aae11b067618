"""Response bodies as the OpenAPI document declares them.

Handlers return the wire dicts directly (`shared.wire.job_to_wire`, `api.datasets`), which
keeps a 500-job page cheap; these models are the contract those dicts are checked against
(the schemathesis and seed-shape tests)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.states import ExecutionCluster, JobState, JobType


class Problem(BaseModel):
    """Every error body: `{type, title, status, detail}`; NQL errors add `line`/`column`."""

    type: str = Field(examples=["nql-syntax-error"])
    title: str = Field(examples=["Invalid NQL"])
    status: int = Field(examples=[400])
    detail: str
    line: int | None = Field(default=None, description="NQL errors only (1-based)")
    column: int | None = Field(default=None, description="NQL errors only (1-based)")


class JobResultsError(BaseModel):
    """Dremio's error for results of a job that is not completed."""

    errorMessage: str = Field(
        examples=["Can not fetch details for a job that is in [FAILED] state."])
    moreInfo: str = Field(examples=[""])


class RequestSource(BaseModel):
    type: str = Field(examples=["api_user"])
    company_id: int
    user_id: int


class JobInput(BaseModel):
    nql: str
    dataset_id: int | None = Field(description="The dataset a materialize-view writes")
    stats_enabled: bool
    compiled_sql: str | None = Field(description="The DuckDB SQL the worker ran")


class MaterializeViewResult(BaseModel):
    dataset_id: int
    snapshot_id: int
    recalculation_id: uuid.UUID


class ForecastResult(BaseModel):
    rows: int = Field(description="Rows the SELECT would return")
    cost: int = Field(description="Micro-cents USD")
    rows_lower: int | None = Field(default=None, description="When sampled")
    rows_upper: int | None = Field(default=None, description="When sampled")


class ExportResult(BaseModel):
    """An `export` job's: the objects written to the target, their rows and bytes."""

    files: list[str]
    rows: int
    bytes: int


class JobFailure(BaseModel):
    message: str
    timestamp: str
    value: dict[str, Any]


class JobStatistics(BaseModel):
    records_inserted: int | None
    result_size: int | None
    duration_ms: int | None
    queued_ms: int | None
    # Runs of incremental views only (DELTA / MERGE):
    refresh: Literal["incremental", "full"] | None = Field(
        default=None, description="incremental: only rows added since the view's last run were read")
    refresh_reason: str | None = Field(default=None, description="why the run read everything")
    rows_read: int | None = Field(default=None, description="input rows read")
    files_read: int | None = Field(default=None, description="input files read")
    progress: int | None = Field(
        default=None, description="0-100 while running: DuckDB's query_progress(), sampled "
                                  "with the run's heartbeat; null when not known")


class Job(BaseModel):
    """DESIGN.md "Jobs (wire format)"."""

    job_id: uuid.UUID
    data_plane_id: uuid.UUID | None
    request_source: RequestSource
    state: JobState
    type: JobType
    input: JobInput
    executor: str | None
    idempotency_key: str
    result: MaterializeViewResult | ForecastResult | ExportResult | None
    failures: list[JobFailure]
    tags: list[str]
    compute_pool_id: uuid.UUID | None
    execution_cluster: ExecutionCluster
    priority: int = Field(ge=-2, le=2)
    retry_limit: int
    attempts: int
    statistics: JobStatistics
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    wait_reason: str | None = Field(
        default=None,
        description="GET /jobs/{job_id} of a pending job: why it has not started ('company cap "
                    "reached', 'cluster full', 'no worker serves its pool', 'retry backoff', "
                    "'queued for a worker', 'being admitted')")


class JobPage(BaseModel):
    """`prev_page`/`next_page` are left out when there is none (seed jobs-list.txt)."""

    current_page: int
    total_records: int
    total_pages: int
    prev_page: int | None = Field(default=None, description="Omitted when none")
    next_page: int | None = Field(default=None, description="Omitted when none")
    records: list[Job]


class ResultTypeName(BaseModel):
    name: str = Field(examples=["BIGINT"])


class ResultColumn(BaseModel):
    name: str
    type: ResultTypeName


class JobResults(BaseModel):
    """Dremio's job results (seed job-results.txt)."""

    rowCount: int
    schema_: list[ResultColumn] = Field(alias="schema")
    rows: list[dict[str, Any]]


class OutputColumnOut(BaseModel):
    name: str
    type: str | None = Field(description="DuckDB type; null when the datasets do not resolve")


class PartitionOut(BaseModel):
    column: str
    transform: str


class BudgetOut(BaseModel):
    amount_usd: float
    period: str | None


class ViewOptions(BaseModel):
    name: str
    refresh_schedule: str | None
    display_name: str | None
    description: str | None
    expire: str | None
    tags: list[str]
    write_mode: str
    extended_stats: str | None
    partitioned_by: list[PartitionOut]
    budget: BudgetOut | None


class Validation(BaseModel):
    kind: str = Field(examples=["materialize-view", "nql-forecast", "select"])
    valid: bool
    output_columns: list[OutputColumnOut]
    view: ViewOptions | None


class DatasetColumn(BaseModel):
    name: str
    type: str


class MaterializedViewConfig(BaseModel):
    nql: str


class Dataset(BaseModel):
    id: int
    company_id: int
    name: str
    display_name: str | None
    description: str | None
    schema_: list[DatasetColumn] = Field(alias="schema")
    tags: list[str]
    write_mode: str
    current_snapshot_id: int | None
    row_count: int = Field(description="Rows in the current snapshot (0 before the first)")
    bytes: int = Field(description="Bytes in the current snapshot")
    materialized_view_config: MaterializedViewConfig | None
    refresh_schedule: dict[str, Any] | None = Field(
        description="The view's REFRESH_SCHEDULE (see the schedule endpoints); null when none")
    created_at: datetime
    updated_at: datetime


class SnapshotFiles(BaseModel):
    total: int
    added: int


class Snapshot(BaseModel):
    snapshot_id: int
    dataset_id: int
    parent_snapshot_id: int | None
    job_id: uuid.UUID | None
    operation: str = Field(examples=["append", "overwrite"])
    row_count: int
    added_rows: int
    bytes: int
    files: SnapshotFiles
    recalculation_id: uuid.UUID | None
    stats_available: bool
    timestamp: datetime


class SnapshotList(BaseModel):
    snapshots: list[Snapshot] = Field(description="Newest first")


class ColumnStat(BaseModel):
    """Narrative's column-stats names; `min`/`max` only for orderable types, `mean` and
    `standard_deviation` only for numeric ones (null otherwise)."""

    name: str
    type: str | None
    count: int | None = Field(description="Non-null values")
    nulls: int | None
    completeness: float | None = Field(description="Share of rows that are not null")
    approx_count_distinct: int | None
    min: Any
    max: Any
    mean: float | str | None = Field(description="\"NaN\"/\"Infinity\" as strings")
    standard_deviation: float | str | None


class ColumnStats(BaseModel):
    dataset_id: int
    snapshot_id: int
    row_count: int
    columns: list[ColumnStat] = Field(
        description="In column order; empty when the snapshot was written with stats off")


class HealthCheck(BaseModel):
    ok: bool
    detail: str
    latency_ms: float | None


class Health(BaseModel):
    status: str = Field(examples=["ok", "unavailable"])
    checks: dict[str, HealthCheck]
