"""A completed job's rows in Treasure Data's result formats (msgpack, msgpack.gz, json
lines, csv, tsv), Hive-style type names, and the stored msgpack.gz object.

Values follow the result schema: timestamps as strings in TD's date format
(`2020-12-31 11:22:33 UTC`, converted to UTC), dates `YYYY-MM-DD`, times `HH:MM:SS[.ffffff]`,
**decimals as strings** (exact, as Presto's own clients return them; a float would round),
structs and maps as maps, lists as arrays, blobs as msgpack bin (base64 text in json/csv),
HUGEINTs outside 64 bits as strings.

`result_size` must be the exact byte length of the msgpack.gz answer, and ranged GETs of it
must return the very same bytes each time: the msgpack.gz is written once (gzip with a fixed
mtime, so identical whoever writes it) to `td-results/<job id>.msgpack.gz` and served from
there. That prefix holds no dataset, so the orphan sweep leaves it alone.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
from sqlalchemy.orm import Session

from shared.results import ResultRows, delimited_text, result_rows
from shared.storage import ObjectExists, ObjectNotFound, Storage
from shared.store.models import Job
from shared.store.td import gz_key, set_result_size, td_job

TD_DATE_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1

# -- types --------------------------------------------------------------------------------

_HIVE_SCALARS = {
    "BIGINT": "bigint", "INT8": "bigint", "LONG": "bigint", "UBIGINT": "bigint",
    "HUGEINT": "bigint", "UHUGEINT": "bigint", "UINTEGER": "bigint",
    "INTEGER": "int", "INT": "int", "INT4": "int", "USMALLINT": "int",
    "SMALLINT": "smallint", "INT2": "smallint", "UTINYINT": "smallint", "TINYINT": "tinyint",
    "DOUBLE": "double", "FLOAT8": "double", "FLOAT": "float", "REAL": "float", "FLOAT4": "float",
    "BOOLEAN": "boolean", "BOOL": "boolean", "DATE": "date", "BLOB": "binary",
    "BYTEA": "binary", "VARCHAR": "string", "TEXT": "string", "STRING": "string",
    "UUID": "string", "JSON": "string", "TIME": "string", "INTERVAL": "string",
}


def _split_top(text: str) -> list[str]:
    """Comma-separated items at nesting depth 0 (`a INTEGER, b STRUCT(c INT, d INT)`)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        items.append("".join(current).strip())
    return items


def hive_type(duckdb_type: str) -> str:
    """The lower-case Hive type name of a DuckDB type string."""
    text = duckdb_type.strip()
    upper = text.upper()
    if upper.endswith("[]"):
        return f"array<{hive_type(text[:-2])}>"
    if upper.startswith("STRUCT(") and upper.endswith(")"):
        fields = []
        for item in _split_top(text[7:-1]):
            name, _, kind = item.partition(" ")
            fields.append(name.strip('"') + ":" + hive_type(kind))
        return f"struct<{','.join(fields)}>"
    if upper.startswith("MAP(") and upper.endswith(")"):
        parts = _split_top(text[4:-1])
        if len(parts) == 2:
            return f"map<{hive_type(parts[0])},{hive_type(parts[1])}>"
    if upper.startswith(("DECIMAL", "NUMERIC")):
        return "decimal" + text[text.find("("):].replace(" ", "").lower() if "(" in text else "decimal"
    if upper.startswith(("TIMESTAMP", "DATETIME")):
        return "timestamp"
    return _HIVE_SCALARS.get(upper.split("(")[0].strip(), "string")


def hive_schema(columns: list[tuple[str, str]] | list[list[str]]) -> str:
    """`hive_result_schema`: a JSON *string* of `[[name, type], ...]` (the client json-decodes it)."""
    return json.dumps([[str(name), hive_type(str(kind))] for name, kind in columns])


# -- values -------------------------------------------------------------------------------

def td_date(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(TD_DATE_FORMAT)


def td_value(value: Any, *, binary: bool = True) -> Any:
    """A DuckDB Python value as TD's results carry it (see the module docstring)."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return td_date(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, dict):
        return {str(k): td_value(v, binary=binary) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [td_value(v, binary=binary) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        if binary:
            return bytes(value)
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


# -- encodings ------------------------------------------------------------------------------

MEDIA_TYPES = {
    "msgpack": "application/x-msgpack",
    "msgpack.gz": "application/octet-stream",
    "json": "application/json",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
}

Encoder = Callable[[list[tuple[Any, ...]]], bytes]


def _msgpack_encoder() -> Encoder:
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def encode(batch: list[tuple[Any, ...]]) -> bytes:
        return b"".join(packer.pack([td_value(v) for v in row]) for row in batch)
    return encode


def _json_encoder() -> Encoder:
    def encode(batch: list[tuple[Any, ...]]) -> bytes:
        return "".join(json.dumps([td_value(v, binary=False) for v in row],
                                  separators=(",", ":")) + "\n" for row in batch).encode()
    return encode


def text_field(value: Any) -> str:
    """One csv/tsv field in TD's text formats (nested values as JSON)."""
    return delimited_text(td_value(value, binary=False))


def _delimited_encoder(delimiter: str) -> Encoder:
    def encode(batch: list[tuple[Any, ...]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerows([text_field(v) for v in row] for row in batch)
        return buffer.getvalue().encode()
    return encode


def encoder(fmt: str) -> Encoder:
    if fmt == "msgpack":
        return _msgpack_encoder()
    if fmt == "json":
        return _json_encoder()
    if fmt in ("csv", "tsv"):
        return _delimited_encoder("," if fmt == "csv" else "\t")
    raise ValueError(f"unknown format {fmt!r}")


def encoded_chunks(rows: ResultRows, fmt: str, *, header: bool) -> Iterator[bytes]:
    """The whole result in `fmt`, a batch of rows per chunk (constant memory)."""
    encode = encoder(fmt)
    if header:
        yield encode([tuple(name for name, _ in rows.columns)])
    for batch in rows.batches:
        if batch:
            yield encode(batch)


# -- the stored msgpack.gz ------------------------------------------------------------------

def write_msgpack_gz(session: Session, storage: Storage, job: Job) -> int:
    """Write the job's msgpack.gz object (if not there yet); its byte length."""
    key = gz_key(job.id)
    rows = result_rows(session, storage, job)
    handle, path = tempfile.mkstemp(suffix=".msgpack.gz")
    try:
        with os.fdopen(handle, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as out:
            for chunk in encoded_chunks(rows, "msgpack", header=False):
                out.write(chunk)
        try:
            return storage.put_file(key, Path(path), move=True)
        except ObjectExists:  # another request wrote the same bytes first
            return storage.size(key)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def ensure_msgpack_gz(session: Session, storage: Storage, job: Job) -> int:
    """`result_size`: the msgpack.gz object's length, writing it on first use."""
    row = td_job(session, job.id)
    if row is not None and row.result_size is not None:
        return row.result_size
    try:
        size = storage.size(gz_key(job.id))
    except ObjectNotFound:
        size = write_msgpack_gz(session, storage, job)
    if row is not None:
        set_result_size(session, job.id, size)
    return size
