"""The test catalog: the seed dataset plus two small ones, and their generated data."""

from __future__ import annotations

from pathlib import Path

import duckdb

from shared.nql import ResolvedDataset, StaticCatalog
from shared.sample_data import SEED_COLUMNS, SEED_DATASET_ID, write_seed_dataset

SEED = ResolvedDataset(SEED_DATASET_ID, "seed_events", f"ds_{SEED_DATASET_ID}", SEED_COLUMNS)
WEB_EVENTS = ResolvedDataset(
    7,
    "web_events",
    "ds_7",
    (
        ("user_id", "VARCHAR"),
        ("country", "VARCHAR"),
        ("amount", "DOUBLE"),
        ("quantity", "INTEGER"),
        ("event_date", "DATE"),
        ("event_ts", "TIMESTAMP"),
        ("tags", "VARCHAR[]"),
        ("scores", "INTEGER[]"),
        ("attrs", 'STRUCT(device VARCHAR, os STRUCT("name" VARCHAR, "version" INTEGER))'),
    ),
)
USERS = ResolvedDataset(
    8,
    "users",
    "ds_8",
    (("user_id", "VARCHAR"), ("signup", "DATE"), ("plan", "VARCHAR"), ("age", "INTEGER")),
)
# Another company's dataset: it exists, but this company's catalog does not list it.
FOREIGN = ResolvedDataset(9, "their_events", "ds_9", (("secret", "VARCHAR"),))

DATASETS = (SEED, WEB_EVENTS, USERS)


def catalog() -> StaticCatalog:
    return StaticCatalog(DATASETS)


_WEB_EVENTS_SQL = """
SELECT
    CASE WHEN i % 17 = 0 THEN NULL ELSE 'u' || (i % 40)::VARCHAR END AS user_id,
    CASE i % 4 WHEN 0 THEN 'US' WHEN 1 THEN 'FR' WHEN 2 THEN NULL ELSE 'DE' END AS country,
    CASE WHEN i % 13 = 0 THEN NULL ELSE round((i * 37 % 1000) / 10.0, 2) END AS amount,
    (i * 7 % 9)::INTEGER AS quantity,
    DATE '2024-01-01' + (i * 11 % 90)::INTEGER AS event_date,
    TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i * 409993 % 7776000) AS event_ts,
    CASE WHEN i % 9 = 0 THEN NULL ELSE ['t' || (i % 5)::VARCHAR, 'x' || (i % 3)::VARCHAR] END
        AS tags,
    [i % 10, i % 7, i % 3]::INTEGER[] AS scores,
    {'device': CASE WHEN i % 2 = 0 THEN 'ios' ELSE 'android' END,
     'os': {'name': CASE WHEN i % 11 = 0 THEN NULL ELSE 'os' || (i % 4)::VARCHAR END,
            'version': (i % 6)::INTEGER}} AS attrs
FROM range(600) AS r(i)
"""
_USERS_SQL = """
SELECT
    'u' || i::VARCHAR AS user_id,
    DATE '2023-06-01' + (i * 5)::INTEGER AS signup,
    CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE NULL END AS plan,
    (18 + i * 3 % 50)::INTEGER AS age
FROM range(50) AS r(i)
"""


def write_test_data(directory: Path, *, seed_rows: int = 20_000) -> dict[str, Path]:
    """Parquet files for every test dataset, keyed by relation."""
    files = {relation: directory / f"{relation}.parquet" for relation in ("ds_6402", "ds_7", "ds_8")}
    write_seed_dataset(files["ds_6402"], seed_rows)
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"COPY ({_WEB_EVENTS_SQL}) TO '{files['ds_7']}' (FORMAT parquet)")
        con.execute(f"COPY ({_USERS_SQL}) TO '{files['ds_8']}' (FORMAT parquet)")
    finally:
        con.close()
    return files


def bind(files: dict[str, Path]) -> duckdb.DuckDBPyConnection:
    """A connection where each `ds_N` is a view over its file, as the worker binds them."""
    con = duckdb.connect(":memory:")
    for relation, path in files.items():
        con.execute(f"CREATE VIEW {relation} AS SELECT * FROM read_parquet('{path}')")
    return con
