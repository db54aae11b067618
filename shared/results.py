"""Reading a completed job's results: Dremio-style pages, whole-result downloads, stats.

The API calls these; they read the Parquet files the worker wrote, with DuckDB, and never
import worker code. The rows of a `materialize-view` job are the files *that job* added
(its snapshot's `added_files`), not the whole dataset after an append.

Pages cost the same at any offset: the page's rows are located by the files' row counts
(Parquet footers), and inside a file by `file_row_number`, a filter DuckDB answers from
row-group metadata, so only the row group(s) holding the page are decoded.

Value formats (DESIGN.md): timestamps `2013-02-10 20:00:00.000` (UTC), dates
`YYYY-MM-DD`, structs and maps as JSON objects, lists as arrays, decimals as numbers,
NaN/Infinity as the strings "NaN"/"Infinity"/"-Infinity" (JSON has no such numbers),
blobs as base64.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import JobNotCompleted
from shared.states import JobState, JobType
from shared.store.datasets import snapshot_of_job
from shared.store.models import Job, Snapshot

Format = Literal["csv", "jsonl", "parquet"]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
FORECAST_FIELDS = ("rows", "cost", "rows_lower", "rows_upper")
_FETCH_ROWS = 8192  # rows per fetch when streaming: constant memory at any result size
_CHUNK_BYTES = 1 << 20

# -- types and values ---------------------------------------------------------------------

_SCALARS = {
    "VARCHAR": "VARCHAR", "TEXT": "VARCHAR", "STRING": "VARCHAR", "UUID": "VARCHAR",
    "JSON": "VARCHAR", "BIGINT": "BIGINT", "INT8": "BIGINT", "LONG": "BIGINT",
    "HUGEINT": "BIGINT", "UBIGINT": "BIGINT", "UHUGEINT": "BIGINT", "UINTEGER": "BIGINT",
    "INTEGER": "INTEGER", "INT": "INTEGER", "INT4": "INTEGER", "SMALLINT": "INTEGER",
    "TINYINT": "INTEGER", "USMALLINT": "INTEGER", "UTINYINT": "INTEGER",
    "DOUBLE": "DOUBLE", "FLOAT8": "DOUBLE", "FLOAT": "FLOAT", "REAL": "FLOAT", "FLOAT4": "FLOAT",
    "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN", "DATE": "DATE", "TIME": "TIME",
    "INTERVAL": "INTERVAL", "BLOB": "VARBINARY", "BYTEA": "VARBINARY",
}


def dremio_type(duckdb_type: str) -> str:
    """The Dremio type name of a DuckDB type string."""
    upper = duckdb_type.strip().upper()
    if upper.endswith("]"):
        return "LIST"
    for prefix, name in (("STRUCT", "STRUCT"), ("MAP", "MAP"), ("DECIMAL", "DECIMAL"),
                         ("NUMERIC", "DECIMAL"), ("TIMESTAMP", "TIMESTAMP"),
                         ("DATETIME", "TIMESTAMP"), ("ENUM", "VARCHAR"), ("UNION", "UNION")):
        if upper.startswith(prefix):
            return name
    return _SCALARS.get(upper.split("(")[0].strip(), "VARCHAR")


def json_value(value: Any) -> Any:
    """A DuckDB Python value as the results API writes it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def csv_text(value: Any) -> str:
    """One CSV field: the results value, with nested values as JSON."""
    value = json_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- where a job's rows are ---------------------------------------------------------------

def _require_completed(job: Job) -> None:
    if job.state != JobState.COMPLETED:
        raise JobNotCompleted(job.state)


def _connect(threads: int = 1) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET threads = {int(threads)}")
    return con


# Pages run only our own SQL over our own files, so they share one in-memory database per
# process and take a cursor each (a new database costs ~13 ms, a page a few ms).
_pages_db: tuple[int, duckdb.DuckDBPyConnection] | None = None
_pages_lock = threading.Lock()


def _page_cursor() -> duckdb.DuckDBPyConnection:
    global _pages_db
    with _pages_lock:
        if _pages_db is None or _pages_db[0] != os.getpid():  # never across a fork
            _pages_db = (os.getpid(), _connect(threads=1))
        return _pages_db[1].cursor()


def _literal(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _job_files(session: Session, settings: Settings, job: Job) -> tuple[list[Path], Snapshot | None]:
    snapshot = snapshot_of_job(session, job.id)
    if snapshot is None:
        return [], None
    return [settings.datasets_dir / f for f in snapshot.added_files], snapshot


def _schema(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> list[tuple[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_literal(files[0])})").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _file_rows(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> list[int]:
    listed = "[" + ", ".join(_literal(f) for f in files) + "]"
    counts = dict(con.execute(
        f"SELECT file_name, num_rows FROM parquet_file_metadata({listed})").fetchall())
    return [int(counts[str(f)]) for f in files]


def _forecast_rows(job: Job) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    result = job.result or {}
    fields = [f for f in FORECAST_FIELDS if f in result]
    return [(f, "BIGINT") for f in fields], [{f: result[f] for f in fields}]


def _page_sql(file: Path, columns: Sequence[str], start: int, stop: int, *,
              by_row_number: bool) -> str:
    select = ", ".join(_quote(c) for c in columns)
    if not by_row_number:  # a column named file_row_number: plain OFFSET (still per file)
        return (f"SELECT {select} FROM read_parquet({_literal(file)}) "
                f"LIMIT {stop - start} OFFSET {start}")
    return (f"SELECT {select} FROM read_parquet({_literal(file)}, file_row_number = true) "
            f"WHERE file_row_number >= {start} AND file_row_number < {stop} "
            "ORDER BY file_row_number")


def read_results(session: Session, settings: Settings, job: Job, *, limit: int,
                 offset: int) -> dict[str, Any]:
    """`{rowCount, schema, rows}` of a completed job; JobNotCompleted otherwise."""
    _require_completed(job)
    if job.type == JobType.NQL_FORECAST:
        schema, forecast = _forecast_rows(job)
        return _body(len(forecast), schema, forecast[offset:offset + limit])
    files, snapshot = _job_files(session, settings, job)
    if snapshot is None or not files:
        return _body(0, [], [])
    with closing(_page_cursor()) as con:
        schema = _schema(con, files)
        names = [n for n, _ in schema]
        by_row_number = "file_row_number" not in names
        rows: list[dict[str, Any]] = []
        first = 0  # row number of the current file's first row in the whole result
        for file, count in zip(files, _file_rows(con, files), strict=True):
            start, stop = max(offset - first, 0), min(offset + limit - first, count)
            if start < stop:
                cursor = con.execute(_page_sql(file, names, start, stop,
                                               by_row_number=by_row_number))
                rows.extend(dict(zip(names, map(json_value, r), strict=True))
                            for r in cursor.fetchall())
            first += count
            if first >= offset + limit:
                break
    return _body(snapshot.added_rows, schema, rows)


def _body(row_count: int, schema: Sequence[tuple[str, str]],
          rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rowCount": row_count,
        "schema": [{"name": n, "type": {"name": dremio_type(t)}} for n, t in schema],
        "rows": rows,
    }


# -- whole-result downloads ---------------------------------------------------------------

def stream_result(session: Session, settings: Settings, job: Job,
                  fmt: Format) -> tuple[str, str, Iterator[bytes]]:
    """(media type, file name, chunks): the whole result, in constant memory.

    Everything that needs the session is looked up now; the iterator only reads files,
    so the caller may end its unit of work before streaming."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown format {fmt!r}")
    _require_completed(job)
    filename = f"{job.id}.{fmt}"
    if job.type == JobType.NQL_FORECAST:
        schema, rows = _forecast_rows(job)
        values = "SELECT " + ", ".join(
            f"{int(rows[0][n])}::BIGINT AS {_quote(n)}" for n, _ in schema)
        return MEDIA_TYPES[fmt], filename, _stream_query(settings, values, [], fmt)
    files, _ = _job_files(session, settings, job)
    if fmt == "parquet" and len(files) == 1:
        return MEDIA_TYPES[fmt], filename, _file_chunks(files[0])
    if not files:
        query = "SELECT NULL AS empty WHERE false"
    else:
        listed = "[" + ", ".join(_literal(f) for f in files) + "]"
        query = f"SELECT * FROM read_parquet({listed})"
    return MEDIA_TYPES[fmt], filename, _stream_query(settings, query, files, fmt)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            yield chunk


def _stream_query(settings: Settings, query: str, files: Sequence[Path],
                  fmt: Format) -> Iterator[bytes]:
    # A generator: nothing runs (no connection is opened) until the first chunk is asked for.
    with closing(_connect(settings.duckdb_threads)) as con:
        con.execute(f"SET memory_limit = {_literal(settings.duckdb_memory_limit)}")
        if fmt == "parquet":
            settings.staging_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=settings.staging_dir, prefix="export-") as tmp:
                target = Path(tmp) / "result.parquet"
                con.execute(f"COPY ({query}) TO {_literal(target)} (FORMAT parquet)")
                yield from _file_chunks(target)
            return
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description or []]
        encode = _csv_encoder(names) if fmt == "csv" else _jsonl_encoder(names)
        if fmt == "csv":
            yield encode(None)
        while batch := cursor.fetchmany(_FETCH_ROWS):
            yield encode(batch)


def _csv_encoder(names: list[str]) -> Any:
    def encode(batch: list[tuple[Any, ...]] | None) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if batch is None:
            writer.writerow(names)
        else:
            writer.writerows([csv_text(v) for v in row] for row in batch)
        return buffer.getvalue().encode()
    return encode


def _jsonl_encoder(names: list[str]) -> Any:
    def encode(batch: list[tuple[Any, ...]]) -> bytes:
        lines = (json.dumps(dict(zip(names, map(json_value, row), strict=True)),
                            separators=(",", ":")) for row in batch)
        return ("\n".join(lines) + "\n").encode()
    return encode


# -- column statistics --------------------------------------------------------------------

STAT_FIELDS = ("approx_count_distinct", "mean", "standard_deviation", "completeness",
               "min", "max", "count", "nulls")


def column_stats(session: Session, snapshot: Snapshot | None) -> dict[str, Any]:
    """Narrative's column-stats shape of a snapshot's stored statistics, in column order.

    `columns` is empty when the snapshot was written with stats disabled."""
    if snapshot is None:
        return {}
    stored: dict[str, dict[str, Any]] = snapshot.column_stats or {}
    ordered = sorted(stored.items(), key=lambda item: item[1].get("position", 0))
    return {
        "dataset_id": snapshot.dataset_id,
        "snapshot_id": snapshot.id,
        "row_count": snapshot.row_count,
        "columns": [{"name": name, "type": values.get("type"),
                     **{f: values.get(f) for f in STAT_FIELDS}} for name, values in ordered],
    }
