"""An append-only input dataset the tests grow batch by batch, and the view's rows read back."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb

from shared.config import Settings
from shared.storage import Storage, import_key
from shared.store import Store
from shared.store.datasets import create_dataset, current_snapshot, find_dataset_by_name, get_dataset, publish_snapshot
from shared.store.progress import read_progress
from tests.s3 import local_copies

COMPANY = 1
INPUT = 500
COLUMNS = (("k", "VARCHAR"), ("v", "BIGINT"))


def batch_sql(start: int, count: int, keys: int = 7) -> str:
    """Rows start..start+count-1: k is NULL every 11th row, else one of `keys` keys."""
    return (f"SELECT CASE WHEN i % 11 = 0 THEN NULL ELSE 'k' || (i % {keys})::VARCHAR END AS k, "
            f"(i * 37 % 1000)::BIGINT AS v FROM range({int(start)}, {int(start + count)}) t(i)")


class Events:
    """Dataset INPUT of COMPANY, written batch by batch (append or overwrite snapshots)."""

    def __init__(self, settings: Settings, store: Store, tmp: Path) -> None:
        self.settings, self.store, self.tmp = settings, store, tmp
        self.storage = Storage.from_settings(settings)
        self.batches: list[str] = []  # the SQL of every batch of the current contents
        self.next_row = 0
        with store.unit_of_work() as session:
            create_dataset(session, company_id=COMPANY, name="events", schema=COLUMNS, dataset_id=INPUT)

    def write(self, count: int, *, mode: str = "append") -> None:
        sql = batch_sql(self.next_row, count)
        self.next_row += count
        token = uuid.uuid4().hex
        path = self.tmp / f"{token}.parquet"
        duckdb.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
        key = import_key(INPUT, token)
        size = self.storage.put_file(key, path, move=True)
        with self.store.unit_of_work() as session:
            publish_snapshot(session, dataset=get_dataset(session, INPUT), job_id=None, write_mode=mode,
                             added_files=[key], added_rows=count, added_bytes=size)
        self.batches = [sql] if mode == "overwrite" else [*self.batches, sql]

    def all_rows_sql(self) -> str:
        return " UNION ALL ".join(f"({b})" for b in self.batches)


def view_rows(settings: Settings, store: Store, name: str, tmp: Path, order: str = "ALL") -> list[tuple[Any, ...]]:
    with store.unit_of_work() as session:
        dataset = find_dataset_by_name(session, company_id=COMPANY, name=name)
        assert dataset is not None
        snapshot = current_snapshot(session, dataset)
        keys = list(snapshot.files) if snapshot else []
    files = local_copies(settings, keys, tmp / uuid.uuid4().hex)
    listed = ", ".join(f"'{f}'" for f in files)
    return duckdb.sql(f"SELECT * FROM read_parquet([{listed}], hive_partitioning = false) "
                      f"ORDER BY {order}").fetchall()


def truth(events: Events, logic: str) -> list[tuple[Any, ...]]:
    """`logic` over all of the input's rows (`{src}` names them), computed by DuckDB alone."""
    return duckdb.sql(f"SELECT * FROM ({logic.format(src='(' + events.all_rows_sql() + ')')}) ORDER BY ALL").fetchall()


def progress(store: Store, name: str) -> dict[int, int]:
    with store.unit_of_work() as session:
        dataset = find_dataset_by_name(session, company_id=COMPANY, name=name)
        assert dataset is not None
        return read_progress(session, dataset.id)
