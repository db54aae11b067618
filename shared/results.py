"""Reading a completed job's results: Dremio-style pages, whole-result downloads, stats.

The API calls these; they read the Parquet objects the worker wrote, through object
storage (ranged reads: the footer, then only the row groups needed), and never import
worker code. The rows of a `materialize-view` job are the objects *that job* added (its
snapshot's `added_files`), not the whole dataset after an append.

Pages cost the same at any offset: the page's rows are located by the files' row counts
(Parquet footers, cached per process: objects never change), and inside a file by its
row groups' counts, so only the row group(s) holding the page are fetched and decoded.

Value formats (DESIGN.md): timestamps `2013-02-10 20:00:00.000` (UTC), dates
`YYYY-MM-DD`, structs and maps as JSON objects, lists as arrays, decimals as numbers,
NaN/Infinity as the strings "NaN"/"Infinity"/"-Infinity" (JSON has no such numbers),
blobs as base64.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import math
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from shared.errors import JobNotCompleted
from shared.states import JobState, JobType
from shared.storage import Storage
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
    return delimited_text(json_value(value))


def delimited_text(value: Any) -> str:
    """A JSON-ready value as one CSV/TSV field: empty for NULL, nested values as JSON."""
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


# Rows are read from storage with pyarrow (ranged reads of the row groups needed) and
# handed to DuckDB only to turn Arrow values into the same Python values, and types into
# the same names, as a DuckDB read of the file gives. One in-memory database per process,
# a cursor per read (a new database costs ~13 ms, a page a few ms).
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


class _Footers:
    """Parquet footers by object key (objects are immutable, so a footer never changes):
    after the first read of a file, finding a page's rows costs no request at all."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, pq.FileMetaData] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, storage: Storage, key: str) -> pq.FileMetaData:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        with storage.open(key) as handle:
            metadata = pq.read_metadata(handle)
        with self._lock:
            self._items[key] = metadata
            if len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return metadata


_footers = _Footers()


@dataclass(frozen=True)
class _File:
    key: str
    metadata: pq.FileMetaData

    @property
    def rows(self) -> int:
        return int(self.metadata.num_rows)

    def row_groups(self, start: int, stop: int) -> tuple[list[int], int]:
        """The row groups holding rows [start, stop) of this file, and the file row number
        of the first of them."""
        groups, first, position = [], None, 0
        for index in range(self.metadata.num_row_groups):
            count = self.metadata.row_group(index).num_rows
            if position < stop and position + count > start:
                groups.append(index)
                first = position if first is None else first
            position += count
        return groups, first or 0


def _job_files(session: Session, storage: Storage, job: Job) -> tuple[list[_File], Snapshot | None]:
    snapshot = snapshot_of_job(session, job.id)
    if snapshot is None:
        return [], None
    return [_File(key, _footers.get(storage, key)) for key in snapshot.added_files], snapshot


def _read_groups(storage: Storage, file: _File, groups: Sequence[int]) -> pa.Table:
    with storage.open(file.key) as handle:
        return pq.ParquetFile(handle, metadata=file.metadata).read_row_groups(groups)


def _values(con: duckdb.DuckDBPyConnection, table: pa.Table) -> duckdb.DuckDBPyRelation:
    return con.from_arrow(table)


def _schema_of(con: duckdb.DuckDBPyConnection, file: _File) -> list[tuple[str, str]]:
    relation = _values(con, file.metadata.schema.to_arrow_schema().empty_table())
    return [(str(n), str(t)) for n, t in zip(relation.columns, relation.types, strict=True)]


def _forecast_rows(job: Job) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    result = job.result or {}
    fields = [f for f in FORECAST_FIELDS if f in result]
    return [(f, "BIGINT") for f in fields], [{f: result[f] for f in fields}]


def read_results(session: Session, storage: Storage, job: Job, *, limit: int,
                 offset: int) -> dict[str, Any]:
    """`{rowCount, schema, rows}` of a completed job; JobNotCompleted otherwise.

    A page costs the same at any offset: the files' row counts come from their footers
    (cached), and only the row groups holding the page are read (ranged reads)."""
    _require_completed(job)
    if job.type == JobType.NQL_FORECAST:
        schema, forecast = _forecast_rows(job)
        return _body(len(forecast), schema, forecast[offset:offset + limit])
    files, snapshot = _job_files(session, storage, job)
    if snapshot is None or not files:
        return _body(0, [], [])
    with closing(_page_cursor()) as con:
        schema = _schema_of(con, files[0])
        names = [n for n, _ in schema]
        rows: list[dict[str, Any]] = []
        first = 0  # row number of the current file's first row in the whole result
        for file in files:
            start, stop = max(offset - first, 0), min(offset + limit - first, file.rows)
            if start < stop:
                groups, base = file.row_groups(start, stop)
                table = _read_groups(storage, file, groups).slice(start - base, stop - start)
                rows.extend(dict(zip(names, map(json_value, r), strict=True))
                            for r in _values(con, table).fetchall())
            first += file.rows
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


# -- whole results, streamed --------------------------------------------------------------

@dataclass(frozen=True)
class ResultRows:
    """A completed job's rows as (name, DuckDB type) columns and batches of Python value
    tuples, read one row group at a time: constant memory at any result size. The files'
    footers are read when this is made, so an outage shows before the first byte is sent."""

    columns: list[tuple[str, str]]
    batches: Iterator[list[tuple[Any, ...]]]


def result_rows(session: Session, storage: Storage, job: Job) -> ResultRows:
    _require_completed(job)
    if job.type == JobType.NQL_FORECAST:
        schema, rows = _forecast_rows(job)
        return ResultRows(schema, iter([[tuple(r[n] for n, _ in schema) for r in rows]]))
    files, _ = _job_files(session, storage, job)
    if not files:
        return ResultRows([], iter(()))
    with closing(_page_cursor()) as con:
        columns = _schema_of(con, files[0])
    return ResultRows(columns, _batches(storage, files))


def _batches(storage: Storage, files: Sequence[_File]) -> Iterator[list[tuple[Any, ...]]]:
    with closing(_page_cursor()) as con:
        for file in files:
            for group in range(file.metadata.num_row_groups):
                con.register("result_rows", _read_groups(storage, file, [group]))
                cursor = con.execute("SELECT * FROM result_rows")
                while batch := cursor.fetchmany(_FETCH_ROWS):
                    yield batch
                con.unregister("result_rows")


def stream_result(session: Session, storage: Storage, job: Job,
                  fmt: Format) -> tuple[str, str, Iterator[bytes]]:
    """(media type, file name, chunks): the whole result, in constant memory.

    Everything that needs the session is looked up now; the iterator only reads objects,
    so the caller may end its unit of work before streaming."""
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown format {fmt!r}")
    filename = f"{job.id}.{fmt}"
    _require_completed(job)
    if fmt == "parquet" and job.type != JobType.NQL_FORECAST:
        files, _ = _job_files(session, storage, job)
        if len(files) == 1:  # the stored object is the answer: pass its bytes through
            return MEDIA_TYPES[fmt], filename, _primed(storage.iter_bytes(files[0].key))
        return MEDIA_TYPES[fmt], filename, _primed(_parquet_chunks(storage, files))
    rows = result_rows(session, storage, job)
    names = [n for n, _ in rows.columns]
    if fmt == "parquet":
        return MEDIA_TYPES[fmt], filename, _parquet_of_rows(rows)
    encode = _csv_encoder(names) if fmt == "csv" else _jsonl_encoder(names)
    return MEDIA_TYPES[fmt], filename, _primed(_encoded(rows, encode, header=fmt == "csv"))


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Make the first chunk now: a storage outage then fails the request (503) before a
    200 and its headers are sent, instead of cutting a download short."""
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())
    return itertools.chain([first], chunks)


def _encoded(rows: ResultRows, encode: Any, *, header: bool) -> Iterator[bytes]:
    batches = iter(rows.batches)
    first = next(batches, None)  # read before the header: see `_primed`
    if header:
        yield encode(None)
    for batch in itertools.chain([first] if first is not None else [], batches):
        yield encode(batch)


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken away as they come (ParquetWriter only
    appends): a streamed Parquet file never sits whole in memory or on disk."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        chunk, self._chunks = b"".join(self._chunks), []
        return chunk


def _parquet_chunks(storage: Storage, files: Sequence[_File]) -> Iterator[bytes]:
    """Several files as one Parquet file, a row group at a time."""
    schema = files[0].metadata.schema.to_arrow_schema() if files else pa.schema([("empty", pa.null())])
    sink = _Sink()
    with pq.ParquetWriter(sink, schema) as writer:
        for file in files:
            for group in range(file.metadata.num_row_groups):
                writer.write_table(_read_groups(storage, file, [group]))
                if chunk := sink.take():
                    yield chunk
    if chunk := sink.take():
        yield chunk


def _parquet_of_rows(rows: ResultRows) -> Iterator[bytes]:
    """A forecast's one row of BIGINTs, as Parquet."""
    values = [row for batch in rows.batches for row in batch]
    table = pa.table({name: pa.array([row[i] for row in values], pa.int64())
                      for i, (name, _) in enumerate(rows.columns)})
    sink = _Sink()
    with pq.ParquetWriter(sink, table.schema) as writer:
        writer.write_table(table)
    yield sink.take()


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
