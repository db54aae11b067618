"""Dataset references -> `ds_N` relations, then full qualification against their schemas.

`company_data."123"`, `company_data.name` and `"company_data"."123"` are looked up in the
catalog and replaced by the bare relation `ds_N` with an alias (the user's, else `ds_N` for an
id and the name for a name), which is the only way compiled SQL names a dataset. Then sqlglot's
`qualify` qualifies every column; a dotted name whose head is a column (`"col"."field"`)
becomes struct access because the schema says `col` is a column.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from shared.errors import (
    ColumnNotFound,
    DatasetNotFound,
    ForbiddenConstruct,
    NQLError,
    UnsupportedConstruct,
)
from shared.nql.allowlist import is_dataset_relation, is_reserved_name
from shared.nql.catalog import Catalog
from shared.nql.dialect import NQL
from shared.nql.models import ResolvedDataset
from shared.nql.position import located
from shared.nql.rules import leftmost_select

COMPANY_DATA = "company_data"
_TABLE_PARTS = frozenset({"this", "db", "alias"})


def dataset_reference(table: exp.Table) -> str | None:
    """The raw reference of `company_data.<reference>`, else None."""
    db = table.args.get("db")
    if table.args.get("catalog") or not isinstance(db, exp.Identifier):
        return None
    if db.name.lower() != COMPANY_DATA or not isinstance(table.this, exp.Identifier):
        return None
    return str(table.name)


def unresolved_relation_ok(table: exp.Table) -> bool:
    """Before resolution only `company_data.x` may be read; say why anything else may not."""
    if dataset_reference(table) is not None:
        return True
    name, db = table.name, table.args.get("db")
    if db is not None:
        if is_reserved_name(db.name):
            raise ForbiddenConstruct(f"System schema {db.name!r} is not readable from NQL")
        # Another namespace (`acme.x`): same answer as a dataset we cannot see.
        raise DatasetNotFound(f"Dataset {table.sql(dialect=NQL)} does not exist or is not accessible")
    if is_dataset_relation(name) or is_reserved_name(name):
        raise ForbiddenConstruct(f"Table {name!r} is reserved and cannot be read from NQL")
    raise DatasetNotFound(f'Table {name!r} does not exist: read datasets as company_data."<id>" or company_data.<name>')


def dataset_references(query: exp.Expr) -> list[str]:
    """Distinct raw references, in order of appearance."""
    seen: dict[str, None] = {}
    for table in query.find_all(exp.Table):
        reference = dataset_reference(table)
        if reference is not None:
            seen.setdefault(reference, None)
    return list(seen)


def resolve_datasets(query: exp.Expr, catalog: Catalog) -> list[ResolvedDataset]:
    """Replace every dataset reference by its relation (in place); return the datasets read."""
    resolved: dict[str, ResolvedDataset] = {}
    aliases: dict[str, set[str]] = {}
    for table in list(query.find_all(exp.Table)):
        reference = dataset_reference(table)
        if reference is None:
            continue
        if reference not in resolved:
            dataset = catalog.resolve(reference)
            if not is_dataset_relation(dataset.relation):
                raise NQLError(f"Dataset {reference!r} has an invalid relation name")
            resolved[reference] = dataset
        extra = sorted(k for k, v in table.args.items() if v and k not in _TABLE_PARTS)
        if extra:  # replacing the node would silently drop these
            raise located(UnsupportedConstruct(f"{', '.join(extra).upper()} on a dataset is not supported"), table)
        relation = resolved[reference].relation
        alias = table.args.get("alias")
        if not isinstance(alias, exp.TableAlias) or not alias.name:
            default = relation if reference.isdigit() else reference
            columns = alias.args.get("columns") if isinstance(alias, exp.TableAlias) else None
            alias = exp.TableAlias(this=exp.to_identifier(default, quoted=True), columns=columns)
        aliases.setdefault(reference, set()).add(alias.name)
        table.replace(exp.Table(this=exp.to_identifier(relation), alias=alias))
    _requalify_dataset_columns(query, aliases)
    unique: dict[int, ResolvedDataset] = {d.dataset_id: d for d in resolved.values()}
    return list(unique.values())


def _requalify_dataset_columns(query: exp.Expr, aliases: dict[str, set[str]]) -> None:
    """`company_data."1".col` as a column -> `<alias>.col` when the dataset has one alias."""
    for column in list(query.find_all(exp.Column)):
        db = column.args.get("db")
        if not isinstance(db, exp.Identifier) or db.name.lower() != COMPANY_DATA:
            continue
        names = aliases.get(column.table, set())
        if len(names) == 1:
            column.set("db", None)
            column.set("table", exp.to_identifier(next(iter(names)), quoted=True))


def dataset_schema(datasets: list[ResolvedDataset]) -> dict[str, object]:
    return {d.relation: dict(d.columns) for d in datasets}


def qualify_query(query: exp.Expr, datasets: list[ResolvedDataset]) -> exp.Expr:
    """Fully qualify `query`; output names keep the case the user wrote."""
    select = leftmost_select(query)
    written = [p.alias_or_name for p in select.expressions] if select else []
    try:
        qualified = qualify(
            query,
            dialect=NQL,
            schema=dataset_schema(datasets),
            validate_qualify_columns=True,
            quote_identifiers=True,
            identify=True,
        )
    except OptimizeError as e:
        message = str(e).splitlines()[0] if str(e) else "a column could not be resolved"
        if "could not be resolved" in message or "Unknown column" in message:
            raise located(ColumnNotFound(f"Column not found: {message}"), _named_column(query, message)) from e
        raise NQLError(f"Cannot resolve the query: {message}") from e
    except SqlglotError as e:
        raise NQLError(f"Cannot resolve the query: {e}") from e
    _restore_output_case(qualified, written)
    return qualified


def _named_column(query: exp.Expr, message: str) -> exp.Expr | None:
    """The column an error message names (quoted in it), to point at its position."""
    for column in query.find_all(exp.Column):
        name = column.name
        if name and (f"'{name}'" in message or f'"{name}"' in message):
            return column
    return None


def _restore_output_case(query: exp.Expr, written: list[str]) -> None:
    # qualify lower-cases identifiers; DuckDB keeps the case of an output name as written.
    select = leftmost_select(query)
    if select is None:
        return
    for projection, name in zip(select.expressions, written, strict=False):
        if isinstance(projection, exp.Alias) and name and projection.alias.lower() == name.lower():
            projection.set("alias", exp.to_identifier(name, quoted=True))
