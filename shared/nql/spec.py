"""`MaterializedView` / `BudgetClause` tree nodes -> typed `MaterializedViewSpec` / `Budget`."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from shared.errors import NQLError
from shared.expire import parse_expire
from shared.nql.dialect import BudgetClause, MaterializedView, MergeClause
from shared.nql.incremental import merge_spec
from shared.nql.models import Budget, MaterializedViewSpec
from shared.nql.position import located

_VIEW_NAME = re.compile(r"[A-Za-z0-9_]{1,256}")
_SCHEDULES = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@once"})
_CHOICES = {"WRITE_MODE": ("append", "overwrite"), "EXTENDED_STATS": ("all", "none")}


def _check_schedule(value: str) -> str:
    # Keywords or a 5-field cron line; the scheduler parses the cron fields themselves.
    if value.lower() in _SCHEDULES or len(value.split()) == 5:
        return value
    raise NQLError(
        f"REFRESH_SCHEDULE {value!r} is not '@hourly', '@daily', '@weekly', '@monthly', "
        "'@once' or a 5-field cron expression"
    )


def budget_from_clause(clause: BudgetClause) -> Budget:
    try:
        amount = Decimal(clause.this.name)
    except InvalidOperation as e:
        raise NQLError(f"Invalid budget amount {clause.this.name!r}") from e
    period = clause.args.get("period")
    return Budget(amount_usd=amount, period=period.name if period else None)


def _column_path(column: exp.Expr) -> str:
    if isinstance(column, exp.Column):
        return ".".join(part.name for part in column.parts)
    return column.name


def view_spec(node: MaterializedView) -> MaterializedViewSpec:
    name = node.this.name
    if not _VIEW_NAME.fullmatch(name):
        raise located(NQLError(f"Materialized view name {name!r} must be 1-256 letters, digits or underscores"),
                      node.this)
    values: dict[str, str] = {}
    tags: tuple[str, ...] | None = None
    for option in node.args.get("options") or []:
        key = option.name
        if key in values or (key == "TAGS" and tags is not None):
            raise NQLError(f"Option {key} is given twice")
        value = option.args["value"]
        if isinstance(value, exp.Tuple):
            tags = tuple(item.name for item in value.expressions)
            continue
        text = value.name
        if key in _CHOICES:
            text = text.lower()
            if text not in _CHOICES[key]:
                allowed = " or ".join(repr(c) for c in _CHOICES[key])
                raise NQLError(f"{key} must be {allowed}, not {value.name!r}")
        if key == "REFRESH_SCHEDULE":
            text = _check_schedule(text)
        if key == "EXPIRE":
            parse_expire(text)  # rejects anything the retention duty could not apply
        values[key] = text
    partitions = tuple(
        (_column_path(item.expressions[0]), item.expressions[1].name) for item in node.args.get("partitions") or []
    )
    budget = node.args.get("budget")
    merge_clause = node.args.get("merge")
    merge = merge_spec(merge_clause) if isinstance(merge_clause, MergeClause) else None
    write_mode = values.get("WRITE_MODE", "append")
    if merge is not None and write_mode != "append":
        raise NQLError(f"MERGE requires WRITE_MODE = 'append' (the view's is {write_mode!r})",
                       rule="merge-requires-append")
    return MaterializedViewSpec(
        name=name,
        refresh_schedule=values.get("REFRESH_SCHEDULE"),
        display_name=values.get("DISPLAY_NAME"),
        description=values.get("DESCRIPTION"),
        expire=values.get("EXPIRE"),
        tags=tags or (),
        write_mode=write_mode,
        extended_stats=values.get("EXTENDED_STATS"),
        partitioned_by=partitions,
        budget=budget_from_clause(budget) if budget else None,
        merge=merge,
    )
