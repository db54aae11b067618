"""An incremental view's run: which rows it reads (DELTA) and how they land (MERGE).

`plan_refresh` (before any input is fetched) reads the view's recorded progress and turns
each DELTA input into the files added since the snapshot the view last consumed, or
decides on a full read, with the reason: first run, a requested full refresh, or an input
whose history since then is not append-only. A full refresh of a view that already has
rows rebuilds it (its new snapshot replaces the old one), so a full refresh always equals
the full recompute of the view.

`merge_into_target` runs the view's MERGE in the run's sandbox: the query's rows become
the table `source`, the view's current rows (local files pinned like any input) the table
`target`; duplicate matches are refused with a readable message before DuckDB's own
`MERGE INTO` runs; the merged table is what the run writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.orm import Session

from shared.errors import UserError
from shared.nql import MaterializedViewSpec
from shared.nql.sandbox import column_ddl
from shared.storage import partition_of_key
from shared.store.datasets import current_snapshot, get_dataset
from shared.store.progress import delta_since, read_progress
from worker.inputs import Input, parquet_list
from worker.partitions import FORMATS, partition_folder
from worker.sandbox import sql_identifier

TARGET = "nql_merge_target"
SOURCE = "nql_merge_source"


class MergeConflict(UserError):
    """The MERGE's ON condition matched rows more than once."""


@dataclass(frozen=True)
class Refresh:
    mode: str  # "incremental" | "full"
    reason: str | None  # why full
    before: dict[int, int]  # progress read at the start (compare-and-set on publish)
    consumed: dict[int, int | None]  # the input snapshots this run reads
    inputs: tuple[Input, ...]  # DELTA inputs narrowed to their new files
    rebuild: bool  # the new snapshot replaces the view's rows
    target_snapshot_id: int | None  # the view's snapshot a MERGE merges into
    target_keys: tuple[str, ...] = field(default=())

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "refresh": self.mode,
            "rows_read": sum(i.row_count for i in self.inputs),
            "files_read": sum(len(i.keys) for i in self.inputs),
        }
        if self.reason:
            stats["refresh_reason"] = self.reason
        return stats

    def publish_mode(self, view: MaterializedViewSpec) -> str:
        """How the run's files replace or join the view's: merge | overwrite | its WRITE_MODE."""
        if view.merge is not None:
            return "merge"
        return "overwrite" if self.rebuild else view.write_mode


def needs_refresh_plan(view: MaterializedViewSpec | None, delta_ids: Sequence[int]) -> bool:
    return view is not None and (bool(delta_ids) or view.merge is not None)


def plan_refresh(session: Session, *, view_dataset_id: int, view: MaterializedViewSpec,
                 inputs: Sequence[Input], delta_ids: Sequence[int], full_requested: bool) -> Refresh:
    before = read_progress(session, view_dataset_id)
    target = current_snapshot(session, get_dataset(session, view_dataset_id))
    consumed = {item.dataset_id: item.snapshot_id for item in inputs}
    reason = _full_reason(session, inputs, delta_ids, before, full_requested, first=target is None)
    narrowed = list(inputs)
    if reason is None:
        for index, item in enumerate(inputs):
            if item.dataset_id not in delta_ids or item.snapshot_id is None:
                continue
            delta = delta_since(session, dataset_id=item.dataset_id, since=before[item.dataset_id],
                                current=item.snapshot_id)
            if delta.full_reason is not None:
                reason = delta.full_reason
                narrowed = list(inputs)
                break
            narrowed[index] = replace(item, keys=delta.keys, row_count=delta.rows)
    full = reason is not None or (not delta_ids and full_requested)
    rebuild = full and target is not None
    merge_target = None if rebuild or target is None or view.merge is None else target
    return Refresh(
        mode="full" if full else "incremental", reason=reason, before=before, consumed=consumed,
        inputs=tuple(narrowed), rebuild=rebuild,
        target_snapshot_id=target.id if target is not None else None,
        target_keys=tuple(merge_target.files) if merge_target is not None else ())


def _full_reason(session: Session, inputs: Sequence[Input], delta_ids: Sequence[int],
                 before: dict[int, int], full_requested: bool, *, first: bool) -> str | None:
    if full_requested:
        return "a full refresh was requested"
    for item in inputs:
        if item.dataset_id not in delta_ids:
            continue
        if item.dataset_id not in before:
            if first:
                return "the view's first run"
            return f"no recorded progress on dataset {item.dataset_id}"
        if item.snapshot_id is None:
            return f"dataset {item.dataset_id} has no snapshot any more"
    return None


def bind_target(con: duckdb.DuckDBPyConnection, columns: Sequence[tuple[str, str]]) -> None:
    """The (empty) table a MERGE writes into; `merge_into_target` loads the view's rows."""
    ddl = ", ".join(column_ddl(n, t) for n, t in columns)
    con.execute(f"CREATE TABLE {TARGET} ({ddl})")


@dataclass(frozen=True)
class Merged:
    select_sql: str  # the merged rows to write
    carried: tuple[tuple[str, Path], ...]  # view files kept as they are (untouched partitions)
    carried_rows: int


def _touched_only(view: MaterializedViewSpec) -> bool:
    """Can the MERGE change rows outside the partitions its source rows fall in? Not when
    ON equates every partition column and no UPDATE SET assigns one."""
    merge = view.merge
    if merge is None or not view.partitioned_by:
        return False
    columns = {c.lower() for c, _ in view.partitioned_by}
    return columns <= set(merge.equal_columns) and not columns & set(merge.set_columns)


def _partition_values(key: str, view: MaterializedViewSpec) -> tuple[str, ...] | None:
    folders = partition_of_key(key)
    if not folders:
        return None  # written before PARTITIONED_BY: its partitions are unknown
    return tuple(folders.get(partition_folder(c, t), "NULL") for c, t in view.partitioned_by)


def merge_into_target(con: duckdb.DuckDBPyConnection, *, select_sql: str, view: MaterializedViewSpec,
                      columns: Sequence[tuple[str, str]],
                      target_files: Sequence[tuple[str, Path]] = ()) -> Merged:
    """Run the view's MERGE over the view's rows (only those of the partitions the query's
    rows fall in, when that is sound); returns what to write and which files to keep."""
    assert view.merge is not None
    con.execute(f"CREATE TABLE {SOURCE} AS {select_sql}")
    load: list[tuple[str, Path]] = list(target_files)
    carried: list[tuple[str, Path]] = []
    if _touched_only(view) and target_files:
        values = ", ".join(f"strftime({sql_identifier(c)}, '{FORMATS[t]}')" for c, t in view.partitioned_by)
        touched = {tuple("NULL" if v is None else str(v) for v in row)
                   for row in con.execute(f"SELECT DISTINCT {values} FROM {SOURCE}").fetchall()}
        load = []
        for key, path in target_files:
            partition = _partition_values(key, view)
            (load if partition is None or partition in touched else carried).append((key, path))
    names = ", ".join(sql_identifier(n) for n, _ in columns)
    if load:
        con.execute(f"INSERT INTO {TARGET} ({names}) SELECT {names} FROM read_parquet("
                    f"{parquet_list([p for _, p in load])}, hive_partitioning = false)")
    carried_rows = 0
    if carried:
        row = con.execute(f"SELECT count(*) FROM read_parquet({parquet_list([p for _, p in carried])}, "
                          "hive_partitioning = false)").fetchone()
        carried_rows = int(row[0]) if row else 0
    join = f"FROM {TARGET} AS target JOIN {SOURCE} AS source ON {view.merge.on}"
    _refuse_duplicates(con, join)
    con.execute(f"MERGE INTO {TARGET} AS target USING {SOURCE} AS source {view.merge.sql}")
    return Merged(select_sql=f"SELECT {names} FROM {TARGET}", carried=tuple(carried), carried_rows=carried_rows)


def _refuse_duplicates(con: duckdb.DuckDBPyConnection, join: str) -> None:
    for side, other, by in (("row of the view (target)", "rows of the query (source)", "target"),
                            ("row of the query (source)", "rows of the view (target)", "source")):
        row = con.execute(f"SELECT count(*), max(n) FROM (SELECT {by}.rowid, count(*) AS n {join} "
                          f"GROUP BY {by}.rowid HAVING count(*) > 1)").fetchone()
        if row and row[0]:
            raise MergeConflict(
                f"MERGE: a {side} matches {row[1]} {other} ({row[0]} such row(s)); the ON "
                "condition must match each row at most once. Nothing was written.",
                type="MergeConflict")
