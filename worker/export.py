"""An `export` job's run: read the source (a job's result or a dataset's current snapshot),
write it in the asked format to a staged file, upload it to the target bucket, complete.

Failures: the target answering 4xx (credentials refused, no such bucket) is the user's and
never retried; a target that cannot be reached or answers 5xx is an infrastructure error,
retried within the job's retry_limit. Messages name the target only in its redacted form.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from shared.errors import InfrastructureError, InvalidRequest, UserError
from shared.export_target import Credentials, Location, decrypt_credentials
from shared.exports import location_of
from shared.store.jobs import complete
from shared.store.models import TdJob
from shared.td_results import td_value, text_field
from worker.export_source import source_tables
from worker.lifecycle import Outcome
from worker.watch import RunStopped, StopReason

if TYPE_CHECKING:
    from obstore.store import RetryConfig

    from worker.execute import Run

_REJECTED = re.compile(r"\b(InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|NoSuchBucket|"
                       r"InvalidBucketName|AuthorizationHeaderMalformed|40[0-9])\b")


class ExportTargetRejected(UserError):
    """The target answered 4xx: retrying cannot help."""


class ExportTargetUnavailable(InfrastructureError):
    """The target could not be reached, or failed on its side (5xx)."""


def object_key(location: Location, job_id: Any, index: int = 0) -> str:
    """Files land under the prefix: `<prefix>/<job id>-<n>.<format>`."""
    name = f"{job_id}-{index}.{location.format}"
    prefix = location.prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def _target_store(location: Location, credentials: Credentials) -> S3Store:
    config: dict[str, Any] = {"region": location.region,
                              "access_key_id": credentials.access_key_id,
                              "secret_access_key": credentials.secret_access_key}
    client: dict[str, Any] = {"connect_timeout": "5s", "timeout": "120s"}
    if location.endpoint:
        config.update(endpoint=location.endpoint, virtual_hosted_style_request=False)
        client["allow_http"] = location.endpoint.startswith("http://")
    retry: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=30)}
    return S3Store(location.bucket, client_options=client,  # type: ignore[arg-type]
                   retry_config=retry, **config)


def upload(location: Location, credentials: Credentials, key: str, path: Path) -> None:
    where = location.redacted()
    try:
        obstore.put(_target_store(location, credentials), key, path)
    except (PermissionDeniedError, UnauthenticatedError):
        raise ExportTargetRejected(f"The export target refused the credentials (access denied): "
                                   f"{where}") from None
    except NotFoundError:
        raise ExportTargetRejected(f"The export target has no bucket {location.bucket!r}: "
                                   f"{where}") from None
    except BaseError as error:
        # Only the S3 error code is kept: obstore's text is not ours to show.
        code = _REJECTED.search(str(error))
        if code:
            raise ExportTargetRejected(f"The export target rejected the upload ({code.group(1)}): "
                                       f"{where}") from None
        raise ExportTargetUnavailable(f"The export target could not be reached or failed "
                                      f"({type(error).__name__}): {where}") from None


# -- formats ------------------------------------------------------------------------------------

def _rows(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    return zip(*(column.to_pylist() for column in table.columns), strict=True)


def write_file(path: Path, fmt: str, names: list[str], tables: Iterator[pa.Table],
               check: Any) -> int:
    """Write every table to `path` in `fmt`; the row count. `check()` between tables (a
    cancel stops the run there)."""
    rows = 0
    if fmt == "parquet":
        writer: pq.ParquetWriter | None = None
        try:
            for table in tables:
                check()
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table.cast(writer.schema) if table.schema != writer.schema
                                   else table)
                rows += table.num_rows
            if writer is None:  # no rows: still a valid file with the columns
                pq.write_table(pa.table({n: pa.array([], pa.string()) for n in names}), path)
        finally:
            if writer is not None:
                writer.close()
        return rows
    with ExitStack() as files:
        raw: IO[bytes] = files.enter_context(
            gzip.open(path, "wb") if fmt.endswith(".gz")  # noqa: SIM115
            else path.open("wb"))  # type: ignore[arg-type]
        out = files.enter_context(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        if fmt.startswith(("csv", "tsv")):
            writer_ = csv.writer(out, delimiter="\t" if fmt.startswith("tsv") else ",",
                                 lineterminator="\n")
            writer_.writerow(names)
            for table in tables:
                check()
                for row in _rows(table):
                    writer_.writerow([text_field(v) for v in row])
                    rows += 1
        else:  # json.gz, jsonl.gz: one JSON object per line
            for table in tables:
                check()
                for row in _rows(table):
                    out.write(json.dumps(
                        {n: td_value(v, binary=False) for n, v in zip(names, row, strict=True)},
                        separators=(",", ":")) + "\n")
                    rows += 1
    return rows


# -- the run ------------------------------------------------------------------------------------

def run_export(run: Run) -> Outcome:
    settings, storage = run.settings, run.files.storage
    with run.store.unit_of_work() as session:
        td = session.get(TdJob, run.job.job_id)
        if td is None or td.export_spec is None or td.result_url_encrypted is None:
            raise InvalidRequest("This export job has no target (its plan is missing)")
        spec = dict(td.export_spec)
        credentials = decrypt_credentials(settings, td.result_url_encrypted)
        names, tables = source_tables(session, storage, spec)
    location = location_of(spec)
    path = run.staging.out / f"export.{location.format}"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = write_file(path, location.format, names, tables, run.watcher.check)
    run.watcher.check()
    key = object_key(location, run.job.job_id)
    size = path.stat().st_size
    upload(location, credentials, key, path)
    result = {"files": [f"s3://{location.bucket}/{key}"], "rows": rows, "bytes": size}
    with run.store.unit_of_work() as session:
        if not complete(session, run.job.job_id, attempt=run.job.attempt, executor=run.executor,
                        result=result, statistics=run.job.statistics(rows=rows, size=size)):
            raise RunStopped(run.watcher.reason or StopReason.FENCED)
    return Outcome.COMPLETED
