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
from typing import TypeVar

import duckdb
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError, UnsupportedError

from shared.errors import ColumnNotFound, DataplaneError, NQLError, UnsupportedConstruct
from shared.nql.allowlist import allowed_relation_names, check_query
from shared.nql.catalog import Catalog
from shared.nql.dialect import NQL, QUERY_SPAN, Explain, MaterializedView
from shared.nql.duckdb_check import check_duckdb_sql
from shared.nql.incremental import check_merge_columns, delta_references
from shared.nql.memo import LruMemo
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
    rewrite_exists_star,
)
from shared.nql.sandbox import describe, readable
from shared.nql.spec import view_spec
from shared.nql.syntax import parse_statement

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Compiles are memoized per process: refresh schedules and retries run the same NQL over
# and over, clients submit the same query under new view names, and a compile (parse,
# qualify, DuckDB check and DESCRIBE) costs 10-80 ms.
# Only results are kept, never syntax trees (~60 bytes of tree per character of NQL), and
# only for statements up to MEMO_MAX_CHARS: at most a few MB per process.
MEMO_ENTRIES = 256
MEMO_MAX_CHARS = 16_000
_statements: LruMemo[tuple[ParsedStatement, str]] = LruMemo(MEMO_ENTRIES)
_compiled: LruMemo[_CompiledQuery] = LruMemo(MEMO_ENTRIES)


@dataclass
class _Parsed:
    statement: ParsedStatement
    query: exp.Expr
    query_text: str  # the query's own text: what its compile depends on, with the catalog


@dataclass(frozen=True)
class _CompiledQuery:
    """The part of a compile that depends on the query alone (and the catalog's answers),
    not on the view around it: memoized on the query's text, so a view submitted under a
    new name (or as EXPLAIN) reuses it."""

    select_sql: str
    output_columns: tuple[OutputColumn, ...]
    datasets: tuple[ResolvedDataset, ...]
    delta_dataset_ids: tuple[int, ...] = ()


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


def _query_text(nql: str, root: exp.Expr) -> str:
    start, end = root.meta.get(QUERY_SPAN, (0, len(nql)))
    return nql[start:end]


def _parse(nql: str) -> _Parsed:
    root = parse_statement(nql)
    kind, maybe_query, view = _split(root)
    if maybe_query is not None:
        rewrite_exists_star(maybe_query)
    query = check_query(maybe_query, relation_ok=unresolved_relation_ok)
    check_explicit_columns(query)
    check_unique_names(output_names(query), query)
    delta_references(query)
    statement = ParsedStatement(kind=kind, view=view, dataset_references=tuple(dataset_references(query)))
    return _Parsed(statement=statement, query=query, query_text=_query_text(nql, root))


def _memoizable(nql: str) -> bool:
    return len(nql) <= MEMO_MAX_CHARS


def parse_nql(nql: str) -> ParsedStatement:
    """Syntax, NQL rules and every check that needs no catalog; raises NQLError."""
    return _guarded(lambda: _statement(nql)[0])


def _statement(nql: str) -> tuple[ParsedStatement, str, _Parsed | None]:
    """The statement and its query's text (memoized on the text), and the parse they came
    from when there was one."""
    memo = _statements.get(nql)
    if memo is not None:
        return memo[0], memo[1], None
    parsed = _parse(nql)
    if _memoizable(nql):
        _statements.put(nql, (parsed.statement, parsed.query_text))
    return parsed.statement, parsed.query_text, parsed


def validate_nql(nql: str) -> Validation:
    """`parse_nql` as a verdict: never raises NQLError, collects it into `problems`."""
    try:
        parsed = _guarded(lambda: _parse(nql))
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
    """The catalog's answers for one compile, replayed to the resolver."""

    def __init__(self, answers: tuple[tuple[str, ResolvedDataset], ...]) -> None:
        self._by_reference = dict(answers)

    def resolve(self, reference: str) -> ResolvedDataset:
        return self._by_reference[reference]


def _compile(nql: str, catalog: Catalog) -> CompiledQuery:
    # The catalog is asked on every compile: access and schemas change between runs. The
    # rest is a function of the query's text and those answers (dataset ids, relations,
    # columns); the view's name and options only add the checks of `_finish`.
    statement, query_text, parsed = _statement(nql)
    answers = tuple((ref, catalog.resolve(ref)) for ref in statement.dataset_references)
    key = (statement.kind, query_text, answers)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compile_parsed(parsed or _parse(nql), answers)
        if _memoizable(nql):
            _compiled.put(key, compiled)
    return _finish(statement, compiled)


def _compile_parsed(parsed: _Parsed, answers: tuple[tuple[str, ResolvedDataset], ...]) -> _CompiledQuery:
    query = parsed.query  # a fresh parse: resolution and qualification rewrite it in place
    delta = delta_references(query)
    delta_ids = tuple(sorted({dataset.dataset_id for ref, dataset in answers if ref in delta}))
    datasets = resolve_datasets(query, _Answers(answers))
    relations = [d.relation for d in datasets]
    query = qualify_query(query, datasets)
    normalize_limits(query)
    check_explicit_columns(query)
    check_query(query, relation_ok=allowed_relation_names(relations))
    check_unique_names(output_names(query), query)

    select_sql = to_duckdb_sql(query)
    check_duckdb_sql(select_sql, relations)
    columns = _output_columns(output_names(query), describe(select_sql, datasets))
    return _CompiledQuery(select_sql=select_sql, output_columns=columns, datasets=tuple(datasets),
                          delta_dataset_ids=delta_ids)


def _finish(statement: ParsedStatement, compiled: _CompiledQuery) -> CompiledQuery:
    view = statement.view
    if view is not None:
        names = {c.name.lower() for c in compiled.output_columns}
        for column, _ in view.partitioned_by:
            if column.lower() not in names:
                raise ColumnNotFound(f"PARTITIONED_BY column {column!r} is not an output column of the query")
        if view.merge is not None:
            check_merge_columns(view.merge.columns, [c.name for c in compiled.output_columns])
    return CompiledQuery(
        kind=statement.kind,
        select_sql=compiled.select_sql,
        output_columns=compiled.output_columns,
        datasets=compiled.datasets,
        view=view,
        delta_dataset_ids=compiled.delta_dataset_ids,
    )


def clear_compile_cache() -> None:
    """Forget every memoized parse and compile (benchmarks time the uncached path)."""
    _statements.clear()
    _compiled.clear()


def compile_nql(nql: str, catalog: Catalog) -> CompiledQuery:
    """Compile one NQL statement to checked DuckDB SQL over `ds_N` relations."""
    return _guarded(lambda: _compile(nql, catalog))
