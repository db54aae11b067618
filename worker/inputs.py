"""The datasets a job reads, pinned to their current snapshot when the run starts.

Each is bound in the job's DuckDB connection as `ds_<id>`: a view over the snapshot's
Parquet files (local: a file:// store's own, or copies pinned from the worker's cache),
or an empty table with the dataset's columns when it has no snapshot yet.
Pinning the snapshot here gives the run a consistent read even if a writer publishes a
new snapshot meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
from sqlalchemy.orm import Session

from shared.nql import ResolvedDataset
from shared.nql.sandbox import column_ddl
from shared.storage import ObjectNotFound, Storage
from shared.store.catalog import Pinned, PinnedCatalog
from shared.store.datasets import current_snapshot, get_dataset
from worker.cache import InputCache
from worker.sandbox import sql_identifier, sql_string


@dataclass(frozen=True, kw_only=True)
class Input:
    dataset_id: int
    relation: str
    columns: tuple[tuple[str, str], ...]
    keys: tuple[str, ...] = ()  # the pinned snapshot's object keys
    files: tuple[Path, ...] = ()  # local files DuckDB reads (set by `localize`)
    row_count: int
    price_micro_cents_per_row: int
    snapshot_id: int | None


def resolve_inputs(session: Session, *, company_id: int,
                   datasets: Iterable[ResolvedDataset]) -> tuple[Input, ...]:
    """Look each dataset up again (company-scoped) and pin its current snapshot."""
    inputs = []
    for resolved in datasets:
        dataset = get_dataset(session, resolved.dataset_id, company_id=company_id)
        inputs.append(pin_input(resolved, Pinned(dataset, current_snapshot(session, dataset))))
    return tuple(inputs)


def pinned_inputs(catalog: PinnedCatalog, datasets: Iterable[ResolvedDataset]) -> tuple[Input, ...]:
    """The inputs from the snapshots the claim pinned (no store round trip)."""
    return tuple(pin_input(d, catalog.by_id(d.dataset_id)) for d in datasets)


def pin_input(resolved: ResolvedDataset, pinned: Pinned) -> Input:
    dataset, snapshot = pinned.dataset, pinned.snapshot
    return Input(
        dataset_id=dataset.id, relation=resolved.relation,
        columns=tuple((str(n), str(t)) for n, t in dataset.schema),
        keys=tuple(snapshot.files) if snapshot else (),
        row_count=snapshot.row_count if snapshot else 0,
        price_micro_cents_per_row=dataset.price_micro_cents_per_row or 0,
        snapshot_id=snapshot.id if snapshot else None,
    )


def localize(inputs: Sequence[Input], *, storage: Storage, cache: InputCache | None,
             into: Path) -> tuple[Input, ...]:
    """Give each input local files: a file:// store's own files, read in place, or the
    objects pinned from the host's cache into the run's folder `into` (trusted code
    fetches; the sandbox only ever sees local paths)."""
    return tuple(replace(item, files=local_files(item.keys, storage=storage, cache=cache,
                                                 into=into / str(index)))
                 for index, item in enumerate(inputs))


def local_files(keys: Sequence[str], *, storage: Storage, cache: InputCache | None,
                into: Path) -> tuple[Path, ...]:
    if cache is not None:
        return tuple(cache.pin(keys, into))
    paths = []
    for key in keys:
        path = storage.local_path(key)
        if path is None:
            raise ValueError("a remote store needs the input cache")
        if not path.is_file():  # our fault, and said without the host's path
            raise ObjectNotFound(f"object storage: {key}: no such object")
        paths.append(path)
    return tuple(paths)


def input_directories(inputs: Iterable[Input]) -> list[Path]:
    return sorted({f.parent for i in inputs for f in i.files})


def parquet_list(files: Sequence[Path]) -> str:
    return "[" + ", ".join(sql_string(f) for f in files) + "]"


def relation_sql(item: Input) -> str:
    """The SELECT a relation stands for (also used to build samples of it)."""
    columns = ", ".join(sql_identifier(name) for name, _ in item.columns)
    # hive_partitioning off: PARTITIONED_BY folders (`d_month=2024-01`) are not columns.
    return f"SELECT {columns} FROM read_parquet({parquet_list(item.files)}, hive_partitioning = false)"


def bind_inputs(con: duckdb.DuckDBPyConnection, inputs: Iterable[Input]) -> None:
    for item in inputs:
        name = sql_identifier(item.relation)
        if item.files:
            con.execute(f"CREATE VIEW {name} AS {relation_sql(item)}")
        else:
            columns = ", ".join(column_ddl(n, t) for n, t in item.columns)
            con.execute(f"CREATE TABLE {name} ({columns})")
