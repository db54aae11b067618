"""NQL used by the worker tests (all over the seed dataset 6402)."""

from __future__ import annotations

SEED = 'company_data."6402"'

# Three-way cross join with a filter DuckDB cannot turn into a hash join, nor prove false from
# column statistics (hour() bounds were enough for DuckDB 2.0.1 to skip the whole join): runs
# for minutes, returns one row, writes nothing meanwhile. Interruptible between vectors.
SLOW_VIEW = (
    'CREATE MATERIALIZED VIEW "slow" AS SELECT count(*) AS n '
    f'FROM {SEED} AS a CROSS JOIN {SEED} AS b CROSS JOIN {SEED} AS c '
    'WHERE (epoch_ms(a."event_timestamp") * 7 + epoch_ms(b."event_timestamp") * 13 '
    '+ epoch_ms(c."event_timestamp")) % 1000 = 999'
)
BAD_COLUMN_VIEW = f'CREATE MATERIALIZED VIEW "bad" AS SELECT "nope" FROM {SEED}'
CONVERSION_VIEW = (
    'CREATE MATERIALIZED VIEW "conv" AS SELECT '
    f'CAST("mobile_id_unique_identifier"."value" AS INTEGER) AS n FROM {SEED}'
)
HOURS_VIEW = (
    'CREATE MATERIALIZED VIEW "hours" AS SELECT "timestamp_object"."hour" AS h, '
    f'"event_timestamp" AS ts FROM {SEED} WHERE "timestamp_object"."hour" < 3'
)
HOURS_OVERWRITE_VIEW = HOURS_VIEW.replace('"hours" AS', "\"hours\" WRITE_MODE = 'overwrite' AS")
FILTER_FORECAST = f'EXPLAIN SELECT "event_timestamp" AS ts FROM {SEED} WHERE "timestamp_object"."hour" < 6'
