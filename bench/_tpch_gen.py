"""Generate TPC-H data, queries and answers with DuckDB's tpch extension.

Runs in its own venv (bench/data/tpch-venv, made by bench/tpch.py), because the PyPI
package `duckdb-extension-tpch` pins its own duckdb. Imports nothing from the project.
Writes, under OUT (git-ignored bench/data/tpch):

    queries/q01.sql .. q22.sql        the 22 queries, as the extension has them
    sf<SF>/<table>.parquet            the 8 tables at each scale factor
    sf<SF>/answers/q01.csv ..         the extension's answers ('|'-separated) when it has them

    bench/data/tpch-venv/bin/python bench/_tpch_gen.py OUT SF [SF ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import duckdb_extension_tpch

TABLES = ("lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region")


def _connect() -> duckdb.DuckDBPyConnection:
    extension = next(Path(duckdb_extension_tpch.__file__).parent.glob("extensions/*/tpch.duckdb_extension"))
    con = duckdb.connect()
    con.execute(f"LOAD '{extension}'")
    return con


def _sf_name(sf: float) -> str:
    return f"sf{sf:g}"


def main() -> None:
    out = Path(sys.argv[1])
    scale_factors = [float(s) for s in sys.argv[2:]]
    con = _connect()
    queries = out / "queries"
    queries.mkdir(parents=True, exist_ok=True)
    for number, text in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall():
        (queries / f"q{number:02d}.sql").write_text(text)
    for sf in scale_factors:
        folder = out / _sf_name(sf)
        done = folder / ".done"
        if done.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        gen = _connect()
        gen.execute(f"CALL dbgen(sf = {sf})")
        for table in TABLES:
            gen.execute(f"COPY {table} TO '{folder / table}.parquet' (FORMAT parquet)")
        gen.close()
        answers = folder / "answers"
        answers.mkdir(exist_ok=True)
        for number, text in con.execute(
                "SELECT query_nr, answer FROM tpch_answers() WHERE scale_factor = ?", [sf]).fetchall():
            (answers / f"q{number:02d}.csv").write_text(text)
        done.write_text("ok\n")
        print(f"generated {folder}", flush=True)


if __name__ == "__main__":
    main()
