"""`dataplane datasets import`: a Parquet or CSV file becomes a dataset with one snapshot.

DuckDB copies the file into one Parquet file (CSV types are sniffed), the schema comes
from DESCRIBE of what was written, and the first snapshot carries column statistics.
The file is written to staging first and uploaded to object storage inside the
transaction that creates the dataset (the dataset's id names the key); a failed import
leaves neither behind. Operators
run this on files they chose, so the connection has resource limits but no lockdown.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.errors import InvalidRequest
from shared.storage import Storage, import_key
from shared.store import Store
from shared.store.datasets import create_dataset, publish_snapshot
from worker.sandbox import Limits, sql_string, trusted_connection
from worker.stats import compute_column_stats

_READERS = {".parquet": "read_parquet", ".pq": "read_parquet", ".csv": "read_csv_auto",
            ".tsv": "read_csv_auto"}


def import_dataset(settings: Settings, store: Store, *, company_id: int, dataset_id: int | None,
                   name: str, source: Path, price_micro_cents_per_row: int = 0) -> dict[str, Any]:
    reader = _READERS.get(source.suffix.lower())
    if reader is None:
        raise InvalidRequest(f"Cannot import {source.name}: expected a .parquet or .csv file")
    settings.ensure_dirs()
    token = uuid.uuid4().hex
    staging = settings.staging_dir / f"import-{token}"
    staged = staging / "data.parquet"
    limits = Limits.from_settings(settings, temp_directory=staging / "tmp", max_execution_ms=0)
    con = trusted_connection(limits)
    storage = Storage.from_settings(settings)
    uploaded: str | None = None
    try:
        row = con.execute(f"COPY (SELECT * FROM {reader}({sql_string(source.resolve())})) "
                          f"TO {sql_string(staged)} (FORMAT parquet)").fetchone()
        rows = int(row[0]) if row else 0
        schema = [(str(r[0]), str(r[1])) for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_string(staged)})").fetchall()]
        stats = compute_column_stats(con, [staged], schema)
        size = staged.stat().st_size
        with store.unit_of_work() as session:
            dataset = create_dataset(session, company_id=company_id, name=name, schema=schema,
                                     dataset_id=dataset_id,
                                     price_micro_cents_per_row=price_micro_cents_per_row)
            relative = import_key(dataset.id, token)
            storage.put_file(relative, staged, move=True)
            uploaded = relative
            snapshot = publish_snapshot(session, dataset=dataset, job_id=None,
                                        write_mode="overwrite", added_files=[relative],
                                        added_rows=rows, added_bytes=size, column_stats=stats,
                                        schema=schema)
            body = {"dataset_id": dataset.id, "company_id": company_id, "name": name,
                    "schema": [list(c) for c in schema], "snapshot_id": snapshot.id,
                    "row_count": rows, "bytes": size, "files": [relative]}
        uploaded = None  # committed: the object belongs to the dataset now
        return body
    finally:
        con.close()
        if uploaded is not None:
            storage.delete([uploaded])
        shutil.rmtree(staging, ignore_errors=True)
