"""The seed dataset and view of the published contract, and data shaped like it.

`SEED_VIEW_NQL` is the `sampleNQL` statement from the "Get a job" example, verbatim (it reads
`company_data."6402"`). `write_seed_dataset` writes deterministic rows of that dataset's shape
to a Parquet file using DuckDB alone (no rows pass through Python), and
`hand_written_seed_query` is the same view written by hand in DuckDB SQL, for checking the
compiler's output against.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

SEED_DATASET_ID = 6402

# Kept line by line so the seed's trailing spaces survive editors.
SEED_VIEW_NQL = "\n".join(
    (
        'CREATE MATERIALIZED VIEW "sampleNQL" as WITH OrderedData AS (',
        " SELECT",
        ' "mobile_id_unique_identifier"."value" AS mobile_id,',
        ' "timestamp_object"."day",',
        ' "timestamp_object"."hour",',
        ' "geographic_location"."latitude",',
        ' "geographic_location"."longitude",',
        ' "event_timestamp",',
        ' LAG("event_timestamp", 1) OVER (PARTITION BY "mobile_id_unique_identifier"."value", "geographic_location"."latitude", "geographic_location"."longitude" ORDER BY "event_timestamp") AS prev_timestamp',  # noqa: E501
        " FROM",
        ' "company_data"."6402"',
        " WHERE",
        ' "mobile_id_unique_identifier"."value" IS NOT NULL ',
        "), ",
        "ContinuousPresence AS (",
        " SELECT",
        " mobile_id,",
        ' "day",',
        ' "hour",',
        " latitude,",
        " longitude,",
        " event_timestamp,",
        " prev_timestamp,",
        " CASE",
        " WHEN extract(minute FROM event_timestamp) - extract(minute FROM prev_timestamp) BETWEEN 40 AND 120 THEN 1",
        " ELSE 0",
        " END AS is_continuous",
        " FROM",
        " OrderedData",
        ")",
        "SELECT",
        " mobile_id,",
        ' "day",',
        ' "hour",',
        " latitude,",
        " longitude",
        "FROM",
        " ContinuousPresence",
        "WHERE",
        " is_continuous = 1",
        "GROUP BY",
        " mobile_id,",
        ' "day",',
        ' "hour",',
        " latitude,",
        " longitude",
        "",
    )
)

SEED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mobile_id_unique_identifier", 'STRUCT("value" VARCHAR, "type" VARCHAR)'),
    ("timestamp_object", 'STRUCT("day" DATE, "hour" INTEGER)'),
    ("geographic_location", "STRUCT(latitude DOUBLE, longitude DOUBLE)"),
    ("event_timestamp", "TIMESTAMP"),
)

# Pseudo-random but reproducible values from the row number alone: multiplying by a large
# prime and reducing spreads consecutive rows. Few ids, each seen at 3 of few locations, so
# each (id, location) partition holds ~65 rows and the seed's 40-120 minute gap rule matches
# a few percent of them. Some ids (and their struct) are NULL, and a few timestamps.
_ROWS_SQL = """
WITH base AS (
    SELECT
        i,
        (i * 7919 + {seed} * 104729) % {ids} AS id_num,
        (i * 104729 + {seed} * 7919) % 2592000 AS second_of_month
    FROM range({rows}) AS r(i)
), shaped AS (
    SELECT
        i,
        id_num,
        (id_num + i % 3) % {locations} AS location,
        CASE WHEN i % 200 = 99 THEN NULL
             ELSE TIMESTAMP '2024-01-01 00:00:00' + to_seconds(second_of_month) END AS ts
    FROM base
)
SELECT
    CASE i % 50
        WHEN 7 THEN NULL
        WHEN 13 THEN {{'value': NULL::VARCHAR, 'type': 'IDFA'}}
        ELSE {{'value': printf('mid-%08d', id_num),
               'type': CASE WHEN id_num % 2 = 0 THEN 'IDFA' ELSE 'GAID' END}}
    END::STRUCT("value" VARCHAR, "type" VARCHAR) AS mobile_id_unique_identifier,
    {{'day': ts::DATE, 'hour': hour(ts)::INTEGER}}::STRUCT("day" DATE, "hour" INTEGER)
        AS timestamp_object,
    {{'latitude': round(40.0 + location * 0.01, 4),
      'longitude': round(-74.0 + location * 0.013, 4)}}
        ::STRUCT(latitude DOUBLE, longitude DOUBLE) AS geographic_location,
    ts AS event_timestamp
FROM shaped
"""


def write_seed_dataset(path: Path, rows: int, *, seed: int = 0) -> None:
    """Write `rows` deterministic seed-shaped rows to one Parquet file at `path`."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    ids = max(10, rows // 200)
    select = _ROWS_SQL.format(seed=int(seed), rows=int(rows), ids=ids, locations=max(3, ids // 50))
    target = str(path).replace("'", "''")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"COPY ({select}) TO '{target}' (FORMAT parquet)")
    finally:
        con.close()


def hand_written_seed_query(relation: str) -> str:
    """The seed view over `relation`, written by hand: same rows as the compiled view."""
    return f"""
WITH located AS (
    SELECT
        mobile_id_unique_identifier['value'] AS mobile_id,
        timestamp_object['day'] AS day,
        timestamp_object['hour'] AS hour,
        geographic_location['latitude'] AS latitude,
        geographic_location['longitude'] AS longitude,
        minute(event_timestamp) AS minute_now,
        minute(lag(event_timestamp) OVER (
            PARTITION BY mobile_id_unique_identifier['value'],
                         geographic_location['latitude'],
                         geographic_location['longitude']
            ORDER BY event_timestamp
        )) AS minute_before
    FROM {relation}
    WHERE mobile_id_unique_identifier['value'] IS NOT NULL
)
SELECT DISTINCT mobile_id, day, hour, latitude, longitude
FROM located
WHERE minute_now - minute_before BETWEEN 40 AND 120
"""
