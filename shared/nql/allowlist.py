"""What a query may contain: an allow-list of functions and of syntax, never a deny-list.

The function list is written once, in DuckDB's own names (`ALLOWED_FUNCTIONS`). sqlglot turns
many calls into typed nodes under its own canonical names (`list(x)` -> `ArrayAgg`), so the
node classes those names parse into are derived from the list by parsing one sample call per
name and arity (`allowed_function_classes`); unknown functions stay `Anonymous` and are checked
by name. Everything else in the tree must be one of `ALLOWED_NODES`.

Relations: a table is either a CTE in scope or, after resolution, one of the allowed `ds_N`
relations. CTE names may not look like a system relation or like `ds_N`, so a CTE can never
stand in for a table it is not (`RESERVED_PREFIXES`, `RESERVED_NAMES`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from functools import cache

from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from shared.errors import ForbiddenConstruct, NQLError, UnsupportedConstruct
from shared.nql.dialect import NQL, STRING_LITERAL_TABLE
from shared.nql.position import located

_AGGREGATE = """
    count sum avg mean min max any_value arbitrary first last arg_min arg_max argmin argmax
    min_by max_by bool_and bool_or stddev stddev_pop stddev_samp variance var_pop var_samp
    median mode quantile quantile_cont quantile_disc approx_count_distinct approx_quantile
    list array_agg string_agg group_concat listagg count_if countif corr covar_pop covar_samp
    histogram product fsum entropy kurtosis skewness bit_and bit_or bit_xor
"""
_WINDOW = """
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value
"""
_SCALAR = """
    coalesce ifnull nullif if greatest least hash md5 sha1 sha256 typeof
"""
_MATH = """
    abs ceil ceiling floor round trunc sign sqrt cbrt pow power exp ln log log2 log10 mod pi
    sin cos tan asin acos atan atan2 degrees radians gcd lcm isnan isinf isfinite even random
    factorial bit_count xor
"""
_STRING = """
    lower upper lcase ucase length len char_length character_length strlen substring substr
    left right trim ltrim rtrim lpad rpad replace reverse repeat concat concat_ws position
    strpos instr contains starts_with ends_with prefix suffix regexp_matches regexp_replace
    regexp_extract regexp_extract_all regexp_split_to_array regexp_full_match split_part
    string_split str_split split string_split_regex ascii chr format printf translate
    levenshtein jaccard jaro_similarity jaro_winkler_similarity damerau_levenshtein hamming
    mismatches strip_accents unicode ord base64 to_base64 from_base64 nfc_normalize
    array_to_string like_escape ilike_escape
"""
_DATETIME = """
    now current_date current_timestamp today date_trunc datetrunc date_part datepart
    date_diff datediff date_sub datesub date_add extract year month day hour minute second
    millisecond microsecond dayofweek dayofmonth dayofyear week weekofyear weekday quarter
    isodow isoyear yearweek epoch epoch_ms epoch_us to_timestamp make_date make_timestamp
    make_time strftime strptime try_strptime last_day dayname monthname age time_bucket
    to_days to_hours to_minutes to_seconds to_months to_years to_weeks century decade
"""
_STRUCT_LIST = """
    struct_extract struct_pack struct_insert row list_value list_extract list_element
    array_extract list_contains array_contains list_has array_has list_has_any list_has_all
    array_length list_distinct array_distinct list_unique list_sort array_sort
    list_reverse_sort array_reverse_sort list_slice array_slice list_concat array_concat
    list_cat array_cat list_append array_append list_prepend array_prepend list_transform
    array_transform apply list_filter array_filter filter list_position array_position
    list_indexof flatten cardinality map map_extract element_at map_keys map_values
    map_entries list_sum list_min list_max list_avg list_reduce array_reduce reduce list_zip
    json_extract json_extract_string to_json json_array_length json_type json_valid
    json_keys uuid gen_random_uuid unnest
"""

# The explicit allow-list, in DuckDB's names. Reads of files, settings, the environment,
# the catalog or other databases (read_*, glob, query, getenv, current_setting, duckdb_*,
# pragma_*, ...) are absent on purpose, as is `list_aggregate`, which calls a function by name.
# `unnest` is the select-list form; UNNEST in FROM is a table function and stays forbidden.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    " ".join((_AGGREGATE, _WINDOW, _SCALAR, _MATH, _STRING, _DATETIME, _STRUCT_LIST)).split()
)

# Syntax a query may use besides function calls (which are checked by name).
ALLOWED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.From, exp.Join,
    exp.Where, exp.Group, exp.Having, exp.Qualify, exp.Order, exp.Ordered, exp.Limit,
    exp.Offset, exp.LimitOptions, exp.With, exp.CTE, exp.TableAlias, exp.Table, exp.Alias,
    exp.Distinct, exp.Window, exp.WindowSpec, exp.Tuple, exp.Paren, exp.Column, exp.Identifier,
    exp.Dot, exp.Bracket, exp.Slice, exp.Literal, exp.Null, exp.Boolean, exp.Star, exp.Interval,
    exp.Var, exp.DataType, exp.DataTypeParam, exp.ColumnDef, exp.Between, exp.In, exp.Is,
    exp.Like, exp.ILike, exp.Escape, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.NullSafeEQ, exp.NullSafeNEQ, exp.And, exp.Or, exp.Not, exp.Neg, exp.Add, exp.Sub,
    exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.DPipe, exp.BitwiseAnd, exp.BitwiseOr,
    exp.BitwiseXor, exp.BitwiseNot, exp.BitwiseLeftShift, exp.BitwiseRightShift, exp.Exists,
    exp.Any, exp.All, exp.Lambda, exp.Filter, exp.PropertyEQ, exp.IgnoreNulls, exp.RespectNulls,
    exp.WithinGroup, exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Extract, exp.Array,
    exp.Struct, exp.Count, exp.Coalesce, exp.CurrentDate, exp.CurrentTimestamp,
    exp.Rollup, exp.Cube, exp.GroupingSets, exp.Grouping,
)  # fmt: skip

# Statements and clauses that are an escape attempt, not merely unsupported syntax.
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Command, exp.DDL, exp.DML, exp.Set, exp.Pragma, exp.Copy, exp.Use, exp.Attach,
    exp.Detach, exp.Install, exp.Describe, exp.Show, exp.Summarize, exp.Into, exp.Placeholder,
    exp.Parameter, exp.Values, exp.Unnest, exp.Lateral, exp.Pivot, exp.TableSample,
)  # fmt: skip

RESERVED_PREFIXES = ("ds_", "duckdb_", "pg_", "sqlite_", "pragma_")
RESERVED_NAMES = frozenset({"information_schema", "pg_catalog", "main", "system", "temp", "memory", "company_data"})
_DATASET_RELATION = re.compile(r"ds_[0-9]+")


def is_reserved_name(name: str) -> bool:
    """A relation name a user-defined CTE may not take."""
    lowered = name.lower()
    return lowered in RESERVED_NAMES or lowered.startswith(RESERVED_PREFIXES)


def is_dataset_relation(name: str) -> bool:
    return _DATASET_RELATION.fullmatch(name.lower()) is not None


def function_name(node: exp.Func) -> str:
    """The name to report for a function node (what the user wrote, when known)."""
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    return node.sql_name()


def _sample_calls() -> Iterator[str]:
    for name in sorted(ALLOWED_FUNCTIONS):
        for args in ("", "x", "x, y", "x, y, z"):
            yield f"SELECT {name}({args}) FROM t"


@cache
def allowed_function_classes() -> frozenset[type[exp.Expr]]:
    """The sqlglot node classes that calls to `ALLOWED_FUNCTIONS` parse into."""
    classes: set[type[exp.Expr]] = set()
    dialect = NQL()
    for sql in _sample_calls():
        try:
            select = dialect.parse(sql)[0]
        except SqlglotError:
            continue  # wrong arity for this name: another sample covers it
        if isinstance(select, exp.Select):
            node = select.expressions[0]
            if isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
                classes.add(type(node))
    return frozenset(classes)


def sample_duckdb_sql() -> list[str]:
    """DuckDB SQL for every sample call, as we would generate it (for the DuckDB-side list)."""
    dialect = NQL()
    out: list[str] = []
    for sql in _sample_calls():
        try:
            select = dialect.parse(sql)[0]
            if select is not None:
                out.append(dialect.generate(select, unsupported_level=ErrorLevel.IGNORE))
        except SqlglotError:
            continue
    return out


def check_function(node: exp.Func) -> None:
    """Raise unless `node` is a call of an allow-listed function."""
    if isinstance(node, exp.Anonymous):
        allowed = str(node.name).lower() in ALLOWED_FUNCTIONS
    else:
        allowed = type(node) in allowed_function_classes() or isinstance(node, ALLOWED_NODES)
    if not allowed:
        raise ForbiddenConstruct(f"Function {function_name(node)} is not allowed in NQL", function=function_name(node))
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        raise ForbiddenConstruct(f"Schema-qualified function {parent.sql(dialect=NQL)} is not allowed in NQL")


def check_node(node: exp.Expr) -> None:
    """Raise unless `node` is allow-listed syntax (functions are checked by `check_function`)."""
    if isinstance(node, FORBIDDEN_NODES):
        label = node.key.upper()
        if isinstance(node, exp.Command):
            label = str(node.this).upper()
        raise ForbiddenConstruct(f"{label} is not allowed in NQL", construct=label)
    if isinstance(node, exp.Func):
        check_function(node)
    elif not isinstance(node, ALLOWED_NODES):
        label = node.key.upper()
        raise UnsupportedConstruct(f"{label} is not supported in NQL", construct=label)


def visible_ctes(table: exp.Table) -> set[str]:
    """Lower-cased names of the CTEs in scope at `table` (any WITH on an enclosing query)."""
    names: set[str] = set()
    node: exp.Expr | None = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with")
        if isinstance(with_, exp.With):
            names.update(cte.alias_or_name.lower() for cte in with_.expressions)
        node = node.parent
    return names


def check_table(table: exp.Table, *, relation_ok: Callable[[exp.Table], bool]) -> None:
    """A table must be a plain name: a CTE in scope, or a relation `relation_ok` accepts."""
    name = table.this
    if not isinstance(name, exp.Identifier):
        label = function_name(name) if isinstance(name, exp.Func) else name.key.upper()
        raise ForbiddenConstruct(f"Table function {label} is not allowed in NQL", function=label)
    if name.meta.get(STRING_LITERAL_TABLE):
        raise ForbiddenConstruct(
            f"A string literal ({name.name!r}) cannot name a table in NQL; "
            'use company_data."<id>" or company_data.<name>'
        )
    if table.args.get("catalog"):
        raise ForbiddenConstruct(f"Catalog-qualified table {table.sql(dialect=NQL)} is not allowed")
    if not table.args.get("db") and name.name.lower() in visible_ctes(table):
        return
    if not relation_ok(table):
        raise ForbiddenConstruct(f"Table {table.sql(dialect=NQL)} is not allowed in NQL")


def check_cte_names(tree: exp.Expr) -> None:
    for cte in tree.find_all(exp.CTE):
        if is_reserved_name(cte.alias_or_name):
            raise located(ForbiddenConstruct(
                f"CTE name {cte.alias_or_name!r} is reserved (it names a system relation)"), cte)
    for with_ in tree.find_all(exp.With):
        if with_.args.get("recursive"):
            raise located(UnsupportedConstruct("WITH RECURSIVE is not supported in NQL"), with_)


# A parenthesized query with ORDER BY/LIMIT after it stays a Subquery at the root.
QUERY_ROOTS = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)


def _innermost(query: exp.Expr) -> exp.Expr:
    while isinstance(query, exp.Subquery):
        query = query.this
    return query


def check_query(query: exp.Expr | None, *, relation_ok: Callable[[exp.Table], bool]) -> exp.Expr:
    """The whole allow-list walk over one query tree; returns the tree when it passes."""
    if query is None:
        raise ForbiddenConstruct("NQL runs a single SELECT, and none was given")
    if not isinstance(query, QUERY_ROOTS) or not isinstance(_innermost(query), exp.Query):
        label = str(query.this).upper() if isinstance(query, exp.Command) else query.key.upper()
        raise ForbiddenConstruct(f"{label} statements are not allowed: NQL runs a single SELECT", construct=label)
    check_cte_names(query)
    for node in query.walk():
        try:
            check_node(node)
            if isinstance(node, exp.Table):
                check_table(node, relation_ok=relation_ok)
        except NQLError as error:
            raise located(error, node) from None
    return query


def allowed_relation_names(relations: Collection[str]) -> Callable[[exp.Table], bool]:
    """A `relation_ok` for resolved trees: bare `ds_N` names from `relations` only."""
    allowed = {r.lower() for r in relations}
    return lambda table: not table.args.get("db") and table.name.lower() in allowed
