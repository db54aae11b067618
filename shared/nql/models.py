"""The typed values the NQL compiler takes and returns (no logic beyond construction)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from shared.errors import NQLError


class StatementKind(StrEnum):
    """What an NQL statement asks for; the values are the public job types."""

    MATERIALIZE_VIEW = "materialize-view"
    FORECAST = "nql-forecast"
    SELECT = "select"


@dataclass(frozen=True)
class ResolvedDataset:
    """A dataset the caller may read, as the compiler and the worker see it."""

    dataset_id: int
    name: str
    relation: str  # the DuckDB relation the executor binds, always f"ds_{dataset_id}"
    columns: tuple[tuple[str, str], ...]  # (column name, DuckDB type string), in order


@dataclass(frozen=True)
class Budget:
    """`BUDGET n USD` or `LIMIT n USD [PER CALENDAR_DAY|CALENDAR_MONTH]`."""

    amount_usd: Decimal
    period: str | None  # None | "CALENDAR_DAY" | "CALENDAR_MONTH"


@dataclass(frozen=True)
class MergeSpec:
    """A view's `MERGE ON ... WHEN ...` clause (`incremental.py`)."""

    sql: str  # DuckDB text of `ON ... WHEN ...`, over the aliases `target` and `source`
    on: str  # DuckDB text of the ON condition alone
    columns: tuple[str, ...]  # every column name it names (lower-cased)
    # Columns the ON condition equates (`target.c = source.c` or IS NOT DISTINCT FROM, in its
    # top-level AND) and columns an UPDATE SET assigns: a MERGE into a PARTITIONED_BY view
    # can rewrite only the partitions it touches when it equates every partition column
    # and assigns none of them.
    equal_columns: tuple[str, ...] = ()
    set_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class MaterializedViewSpec:
    """The options of `CREATE MATERIALIZED VIEW`, typed and defaulted."""

    name: str
    refresh_schedule: str | None = None
    display_name: str | None = None
    description: str | None = None
    expire: str | None = None
    tags: tuple[str, ...] = ()
    write_mode: str = "append"  # "append" | "overwrite"
    extended_stats: str | None = None  # None | "all" | "none"
    partitioned_by: tuple[tuple[str, str], ...] = ()  # (column, "DAY" | "MONTH" | "YEAR")
    budget: Budget | None = None
    merge: MergeSpec | None = None


@dataclass(frozen=True)
class OutputColumn:
    """One column of the compiled query's result."""

    name: str
    duckdb_type: str


@dataclass(frozen=True)
class ParsedStatement:
    """What can be learnt from the text alone, without a catalog."""

    kind: StatementKind
    view: MaterializedViewSpec | None
    dataset_references: tuple[str, ...]  # raw references after `company_data.` (ids or names)


@dataclass(frozen=True)
class CompiledQuery:
    """A checked statement, ready for the worker: `select_sql` is DuckDB SQL over `ds_N`."""

    kind: StatementKind
    select_sql: str
    output_columns: tuple[OutputColumn, ...]
    datasets: tuple[ResolvedDataset, ...]
    view: MaterializedViewSpec | None
    delta_dataset_ids: tuple[int, ...] = ()  # datasets read as DELTA(TABLE ...)


@dataclass(frozen=True)
class Validation:
    """The catalog-free verdict on a statement; `problems` is empty when it is valid."""

    kind: StatementKind | None
    view: MaterializedViewSpec | None
    output_columns: tuple[str, ...]
    problems: tuple[NQLError, ...]

    @property
    def ok(self) -> bool:
        return not self.problems
