"""The incremental parts of a materialized view: `DELTA(TABLE ...)` inputs and the
`MERGE ON ... WHEN ...` clause.

- DELTA: a dataset read as `DELTA(TABLE company_data."1")` is, on the view's later runs,
  bound to only the files added since the snapshot its last successful run consumed (the
  worker decides that; here we only say which datasets are read so). One dataset is read
  either as a DELTA or whole within a statement, never both: the relation `ds_N` is bound
  once per run.
- MERGE: checked structurally (only `UPDATE SET col = expr, ...`, `DELETE` and
  `INSERT (cols) VALUES (exprs)`, columns qualified by `target.` / `source.`, allow-listed
  functions, no subqueries) and kept as the DuckDB text of `ON ... WHEN ...`, which the
  worker runs as `MERGE INTO <view rows> AS target USING (<query>) AS source <that>`.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from shared.errors import ColumnNotFound, ForbiddenConstruct, NQLError, UnsupportedConstruct
from shared.nql.allowlist import check_node
from shared.nql.dialect import DELTA_TABLE, NQL, MergeClause
from shared.nql.models import MergeSpec
from shared.nql.position import located
from shared.nql.resolve import dataset_reference

MERGE_ALIASES = ("target", "source")


def delta_references(query: exp.Expr) -> set[str]:
    """The dataset references read through DELTA(TABLE ...)."""
    delta: set[str] = set()
    whole: set[str] = set()
    for table in query.find_all(exp.Table):
        reference = dataset_reference(table)
        if table.meta.get(DELTA_TABLE):
            if reference is None:
                raise located(UnsupportedConstruct(
                    f"DELTA reads a dataset (company_data.\"<id>\" or company_data.<name>), "
                    f"not {table.name!r}"), table)
            delta.add(reference)
        elif reference is not None:
            whole.add(reference)
    both = sorted(delta & whole)
    if both:
        raise UnsupportedConstruct(
            f"Dataset {both[0]!r} is read both as DELTA(TABLE ...) and whole in one statement; "
            "read it one way")
    return delta


def _check_expression(node: exp.Expr | None, columns: set[str]) -> None:
    if node is None:
        return
    for child in node.walk():
        if isinstance(child, exp.Query | exp.Table):
            raise located(ForbiddenConstruct("A MERGE clause cannot contain a subquery or a table"), child)
        check_node(child)
        if isinstance(child, exp.Column):
            table = child.table.lower()
            if table not in MERGE_ALIASES:
                raise located(NQLError(
                    f"Column {child.sql(dialect=NQL)} in MERGE must be qualified by target. or source.",
                    rule="merge-columns"), child)
            columns.add(child.name.lower())


def _target_column(node: exp.Expr, columns: set[str]) -> None:
    if not isinstance(node, exp.Column) or node.table.lower() not in ("", "target"):
        raise located(NQLError(f"{node.sql(dialect=NQL)} is not a column of the view", rule="merge-columns"), node)
    columns.add(node.name.lower())


def merge_spec(clause: MergeClause) -> MergeSpec:
    columns: set[str] = set()
    _check_expression(clause.args["on"], columns)
    for when in clause.args["whens"].expressions:
        if when.args.get("source"):
            raise located(UnsupportedConstruct("WHEN NOT MATCHED BY SOURCE is not supported in NQL"), when)
        _check_expression(when.args.get("condition"), columns)
        then = when.args.get("then")
        matched = bool(when.args.get("matched"))
        if matched and isinstance(then, exp.Update) and not then.args.get("where"):
            assignments = then.expressions
            if not assignments or any(isinstance(a, exp.Star) for a in assignments):
                raise located(UnsupportedConstruct("WHEN MATCHED THEN UPDATE needs SET col = expr, ..."), when)
            for assignment in assignments:
                if not isinstance(assignment, exp.EQ):
                    raise located(NQLError("UPDATE SET takes col = expr", rule="merge-columns"), assignment)
                _target_column(assignment.this, columns)
                _check_expression(assignment.expression, columns)
        elif matched and isinstance(then, exp.Var) and then.name.upper() == "DELETE":
            pass
        elif (not matched and isinstance(then, exp.Insert) and isinstance(then.this, exp.Tuple)
              and isinstance(then.expression, exp.Tuple) and not then.args.get("where")):
            names, values = then.this.expressions, then.expression.expressions
            if len(names) != len(values):
                raise located(NQLError("INSERT names a different number of columns than VALUES gives"), then)
            for name in names:
                _target_column(name, columns)
            for value in values:
                _check_expression(value, columns)
        else:
            kind = "WHEN MATCHED takes UPDATE SET ... or DELETE" if matched else \
                "WHEN NOT MATCHED takes INSERT (cols) VALUES (exprs)"
            raise located(UnsupportedConstruct(f"Unsupported MERGE action: {kind}"), when)
    dialect = NQL()
    on = dialect.generate(clause.args["on"], comments=False, unsupported_level=ErrorLevel.RAISE)
    whens = dialect.generate(clause.args["whens"], comments=False, unsupported_level=ErrorLevel.RAISE)
    return MergeSpec(sql=f"ON {on} {whens}", on=on, columns=tuple(sorted(columns)),
                     equal_columns=_equated(clause.args["on"]), set_columns=_assigned(clause))


def _equated(on: exp.Expr) -> tuple[str, ...]:
    conjuncts = list(on.flatten()) if isinstance(on, exp.And) else [on]
    equal: set[str] = set()
    for node in conjuncts:
        if isinstance(node, exp.EQ | exp.NullSafeEQ) and isinstance(node.this, exp.Column) \
                and isinstance(node.expression, exp.Column):
            sides = {node.this.table.lower(): node.this.name.lower(),
                     node.expression.table.lower(): node.expression.name.lower()}
            if set(sides) == {"target", "source"} and sides["target"] == sides["source"]:
                equal.add(sides["target"])
    return tuple(sorted(equal))


def _assigned(clause: MergeClause) -> tuple[str, ...]:
    names: set[str] = set()
    for when in clause.args["whens"].expressions:
        then = when.args.get("then")
        if isinstance(then, exp.Update):
            names.update(a.this.name.lower() for a in then.expressions if isinstance(a, exp.EQ))
    return tuple(sorted(names))


def check_merge_columns(merge_columns: tuple[str, ...], output: list[str]) -> None:
    names = {n.lower() for n in output}
    for column in merge_columns:
        if column not in names:
            raise ColumnNotFound(f"MERGE names column {column!r}, which the view's query does not output")
