"""parse -> rules and allow-list -> resolve -> qualify -> allow-list again -> generate ->
DuckDB check -> DESCRIBE. The public entry points of the NQL compiler.

Every failure leaves as an `NQLError` subclass (or, from the catalog itself, another
`DataplaneError` such as an infrastructure error); a raw sqlglot or DuckDB exception never
escapes, and an unexpected exception inside the compiler is reported as an `NQLError`, so a
compiler bug rejects a statement rather than letting it through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import duckdb
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError, UnsupportedError

from shared.errors import ColumnNotFound, DataplaneError, NQLError, UnsupportedConstruct
from shared.nql.allowlist import allowed_relation_names, check_query
from shared.nql.catalog import Catalog
from shared.nql.dialect import NQL, Explain, MaterializedView
from shared.nql.duckdb_check import check_duckdb_sql
from shared.nql.models import (
    CompiledQuery,
    MaterializedViewSpec,
    OutputColumn,
    ParsedStatement,
    ResolvedDataset,
    StatementKind,
    Validation,
)
from shared.nql.resolve import (
    dataset_references,
    qualify_query,
    resolve_datasets,
    unresolved_relation_ok,
)
from shared.nql.rules import (
    check_explicit_columns,
    check_unique_names,
    normalize_limits,
    output_names,
)
from shared.nql.sandbox import describe, readable
from shared.nql.spec import view_spec
from shared.nql.syntax import parse_statement

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Compiles are memoized per process: refresh schedules and retries run the same NQL over
# and over, and a compile (parse, qualify, DuckDB check and DESCRIBE) costs 10-80 ms.
CACHE_SIZE = 256


@dataclass
class _Parsed:
    statement: ParsedStatement
    query: exp.Expr


def _guarded(step: Callable[[], T]) -> T:
    """Run a compiler step so that only NQLError (or a catalog's own DataplaneError) leaves."""
    try:
        return step()
    except DataplaneError:
        raise
    except UnsupportedError as e:
        raise UnsupportedConstruct(f"Cannot translate to DuckDB: {e}") from e
    except SqlglotError as e:
        raise NQLError(f"Invalid NQL: {e}") from e
    except duckdb.Error as e:
        raise NQLError(f"Invalid NQL: {readable(e)}") from e
    except RecursionError as e:
        raise NQLError("The statement is nested too deeply") from e
    except Exception as e:  # fail closed: a compiler bug must reject, not crash the caller
        logger.exception("unexpected error while compiling NQL")
        raise NQLError("The statement could not be compiled (internal compiler error)") from e


def _unwrap(query: exp.Expr | None) -> exp.Expr | None:
    """`( SELECT ... )` alone is the same as `SELECT ...` (the docs show `AS ( ... )`)."""
    while isinstance(query, exp.Subquery) and all(key == "this" or not value for key, value in query.args.items()):
        query = query.this
    return query


def _split(root: exp.Expr) -> tuple[StatementKind, exp.Expr | None, MaterializedViewSpec | None]:
    if isinstance(root, MaterializedView):
        return StatementKind.MATERIALIZE_VIEW, _unwrap(root.expression), view_spec(root)
    if isinstance(root, Explain):
        return StatementKind.FORECAST, _unwrap(root.this), None
    return StatementKind.SELECT, _unwrap(root), None


def _parse(nql: str) -> _Parsed:
    kind, maybe_query, view = _split(parse_statement(nql))
    query = check_query(maybe_query, relation_ok=unresolved_relation_ok)
    check_explicit_columns(query)
    check_unique_names(output_names(query))
    statement = ParsedStatement(kind=kind, view=view, dataset_references=tuple(dataset_references(query)))
    return _Parsed(statement=statement, query=query)


@lru_cache(maxsize=CACHE_SIZE)
def _parse_once(nql: str) -> _Parsed:
    """`_parse` depends on the text alone. The tree is shared: callers copy it to change it."""
    return _parse(nql)


def parse_nql(nql: str) -> ParsedStatement:
    """Syntax, NQL rules and every check that needs no catalog; raises NQLError."""
    return _guarded(lambda: _parse_once(nql).statement)


def validate_nql(nql: str) -> Validation:
    """`parse_nql` as a verdict: never raises NQLError, collects it into `problems`."""
    try:
        parsed = _guarded(lambda: _parse_once(nql))
    except NQLError as e:
        return Validation(kind=None, view=None, output_columns=(), problems=(e,))
    return Validation(
        kind=parsed.statement.kind,
        view=parsed.statement.view,
        output_columns=tuple(output_names(parsed.query)),
        problems=(),
    )


def to_duckdb_sql(query: exp.Expr) -> str:
    """DuckDB SQL from a checked tree; comments are dropped so none can smuggle SQL through."""
    return NQL().generate(query, pretty=True, comments=False, unsupported_level=ErrorLevel.RAISE)


def _output_columns(names: list[str], described: tuple[OutputColumn, ...]) -> tuple[OutputColumn, ...]:
    """Our names (DESCRIBE may change their case; execution does not) with DuckDB's types."""
    if [n.lower() for n in names] != [c.name.lower() for c in described]:
        raise NQLError("The compiler and DuckDB disagree on the output columns")
    return tuple(OutputColumn(name=n, duckdb_type=c.duckdb_type) for n, c in zip(names, described, strict=True))


class _Answers:
    """The catalog's answers for one compile, replayed so that the result can be cached."""

    def __init__(self, answers: tuple[tuple[str, ResolvedDataset], ...]) -> None:
        self._by_reference = dict(answers)

    def resolve(self, reference: str) -> ResolvedDataset:
        return self._by_reference[reference]


def _compile(nql: str, catalog: Catalog) -> CompiledQuery:
    # The catalog is asked on every compile: access and schemas change between runs. The
    # rest is a function of the text and those answers (dataset ids, relations, columns).
    parsed = _parse_once(nql)
    answers = tuple((ref, catalog.resolve(ref)) for ref in parsed.statement.dataset_references)
    return _compile_resolved(nql, answers)


@lru_cache(maxsize=CACHE_SIZE)
def _compile_resolved(nql: str, answers: tuple[tuple[str, ResolvedDataset], ...]) -> CompiledQuery:
    parsed = _parse_once(nql)
    query = parsed.query.copy()  # resolution and qualification rewrite the tree in place
    datasets = resolve_datasets(query, _Answers(answers))
    relations = [d.relation for d in datasets]
    query = qualify_query(query, datasets)
    normalize_limits(query)
    check_explicit_columns(query)
    check_query(query, relation_ok=allowed_relation_names(relations))
    check_unique_names(output_names(query))

    select_sql = to_duckdb_sql(query)
    check_duckdb_sql(select_sql, relations)
    columns = _output_columns(output_names(query), describe(select_sql, datasets))

    view = parsed.statement.view
    if view is not None:
        names = {c.name.lower() for c in columns}
        for column, _ in view.partitioned_by:
            if column.lower() not in names:
                raise ColumnNotFound(f"PARTITIONED_BY column {column!r} is not an output column of the query")
    return CompiledQuery(
        kind=parsed.statement.kind,
        select_sql=select_sql,
        output_columns=columns,
        datasets=tuple(datasets),
        view=view,
    )


def clear_compile_cache() -> None:
    """Forget every memoized parse and compile (benchmarks time the uncached path)."""
    _parse_once.cache_clear()
    _compile_resolved.cache_clear()


def compile_nql(nql: str, catalog: Catalog) -> CompiledQuery:
    """Compile one NQL statement to checked DuckDB SQL over `ds_N` relations."""
    return _guarded(lambda: _compile(nql, catalog))
