"""The NQL compiler: NQL text -> checked DuckDB SQL over the caller's datasets.

    compile_nql(nql, catalog) -> CompiledQuery     (raises NQLError subclasses)
    validate_nql(nql) -> Validation                 (no catalog; never raises NQLError)
    parse_nql(nql) -> ParsedStatement               (no catalog; raises NQLError)
    check_duckdb_sql(sql, allowed_relations)        (the DuckDB-parser second gate)
    clear_compile_cache()                           (compiles are memoized per process)

Statements: `CREATE MATERIALIZED VIEW "name" [options] AS <query> [BUDGET n USD |
LIMIT n USD [PER CALENDAR_DAY|CALENDAR_MONTH]]`, `EXPLAIN <query>` (a forecast) and a bare
`<query>`. Datasets are read as `company_data."<id>"` or `company_data.<name>`.

NQL rules (see `rules.py`):
- explicit columns: `SELECT *` and `t.*` are rejected; `COUNT(*)` is allowed;
- output column names must be unique: a duplicate is rejected, naming it;
- NULLs sort as the highest value: ASC -> NULLS LAST, DESC -> NULLS FIRST, written out;
- only a single query over the caller's datasets and allow-listed functions reaches DuckDB
  (`allowlist.py`), checked again by DuckDB's own parser (`duckdb_check.py`).

Modules: dialect (grammar), syntax (text -> tree), spec (view options), rules, allowlist,
resolve (catalog + qualify), sandbox (locked DuckDB, DESCRIBE), duckdb_check, compiler.
"""

from shared.nql.catalog import Catalog, StaticCatalog
from shared.nql.compiler import clear_compile_cache, compile_nql, parse_nql, validate_nql
from shared.nql.duckdb_check import check_duckdb_sql
from shared.nql.models import (
    Budget,
    CompiledQuery,
    MaterializedViewSpec,
    OutputColumn,
    ParsedStatement,
    ResolvedDataset,
    StatementKind,
    Validation,
)

__all__ = [
    "Budget",
    "Catalog",
    "CompiledQuery",
    "MaterializedViewSpec",
    "OutputColumn",
    "ParsedStatement",
    "ResolvedDataset",
    "StatementKind",
    "StaticCatalog",
    "Validation",
    "check_duckdb_sql",
    "clear_compile_cache",
    "compile_nql",
    "parse_nql",
    "validate_nql",
]
