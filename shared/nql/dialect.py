"""The `NQL` sqlglot dialect: DuckDB's grammar plus the NQL statements around a query.

    CREATE MATERIALIZED VIEW "name" [option ...] AS <query> [budget]
    EXPLAIN <query>
    <query>

Options are `KEY = 'string'`, `TAGS = ('a', ...)` and `PARTITIONED_BY col DAY|MONTH|YEAR, ...`;
the budget is `BUDGET n USD` or `LIMIT n USD [PER CALENDAR_DAY|CALENDAR_MONTH]`. They are kept
in the tree as `MaterializedView` / `Explain` / `BudgetClause` nodes; `spec.py` types them.

NULLs are the highest value (`NULL_ORDERING = "nulls_are_large"`), and the generator, which
writes DuckDB SQL, always spells out `NULLS FIRST|LAST` so the order never depends on a default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError
from sqlglot.generators.duckdb import DuckDBGenerator
from sqlglot.parsers.duckdb import DuckDBParser
from sqlglot.tokens import Token, TokenType

STRING_OPTIONS = (
    "REFRESH_SCHEDULE",
    "DISPLAY_NAME",
    "DESCRIPTION",
    "EXPIRE",
    "WRITE_MODE",
    "EXTENDED_STATS",
)
PARTITION_TRANSFORMS = ("DAY", "MONTH", "YEAR")
BUDGET_PERIODS = ("CALENDAR_DAY", "CALENDAR_MONTH")
STRING_LITERAL_TABLE = "nql_string_literal"  # Identifier meta flag: `FROM '/etc/passwd'`
# Meta of a MaterializedView / Explain: (start, end) character offsets of its query in the
# text, so the compiler can memoize a query's compile whatever the view is named.
QUERY_SPAN = "nql_query_span"


class MaterializedView(exp.Expression):
    """`CREATE MATERIALIZED VIEW this options... AS expression [budget]`."""

    arg_types: ClassVar[dict[str, bool]] = {
        "this": True,  # Identifier: the view name
        "options": False,  # list[exp.Property]; TAGS has a Tuple value
        "partitions": False,  # list[exp.Tuple(column, Var(transform))]
        "expression": True,  # the query
        "budget": False,  # BudgetClause
    }


class Explain(exp.Expression):
    """`EXPLAIN <query>`: a forecast of the query."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class BudgetClause(exp.Expression):
    """`BUDGET n USD` (keyword BUDGET) or `LIMIT n USD [PER period]` (keyword LIMIT)."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "keyword": True, "period": False}


def _token_is(token: Token, text: str) -> bool:
    """A keyword written as a bare word (a quoted identifier never counts)."""
    return token.token_type != TokenType.IDENTIFIER and token.text.upper() == text


class NQL(DuckDB):
    NULL_ORDERING = "nulls_are_large"

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            k: v for k, v in DuckDB.Tokenizer.KEYWORDS.items() if k != "EXPLAIN"
        }  # EXPLAIN would swallow the rest as an opaque Command; we parse its query instead

    class Parser(DuckDBParser):
        def raise_error(self, message: str, token: Token | None = None) -> None:
            # Keep the failing token's offset so the caller can report where the token
            # starts (sqlglot's `col` is where it ends).
            at = token or self._curr or self._prev
            start = at.start if at else None
            try:
                if token is None:
                    super().raise_error(message)
                else:
                    super().raise_error(message, token)
            except ParseError as e:
                for error in e.errors:
                    error.setdefault("start", start)
                raise
            for error in self.errors[-1].errors if self.errors else ():
                error.setdefault("start", start)

        def _parse_statement(self) -> exp.Expr | None:
            if self._curr and self._match_text_seq("CREATE", "MATERIALIZED", "VIEW"):
                return self._parse_materialized_view()
            if self._curr and _token_is(self._curr, "EXPLAIN") and self._next:
                self._advance()
                start = self._curr.start
                explain = self.expression(Explain(this=super()._parse_statement()))
                explain.meta[QUERY_SPAN] = (start, self._prev.end + 1 if self._prev else start)
                return explain
            return super()._parse_statement()

        def _parse_string_as_identifier(self) -> exp.Identifier | None:
            identifier = super()._parse_string_as_identifier()
            if identifier is not None:
                identifier.meta[STRING_LITERAL_TABLE] = True
            return identifier

        # -- CREATE MATERIALIZED VIEW -------------------------------------------------

        def _parse_materialized_view(self) -> exp.Expr:
            name = self._parse_id_var(any_token=False)
            if name is None:
                self.raise_error("Expected the materialized view's name")
            options: list[exp.Expr] = []
            partitions: list[exp.Expr] = []
            while self._curr and not self._match(TokenType.ALIAS):
                if self._match_text_seq("PARTITIONED_BY"):
                    partitions.extend(self._parse_csv(self._parse_partition_item))
                else:
                    options.append(self._parse_view_option())
            if not self._prev or self._prev.token_type != TokenType.ALIAS:
                self.raise_error("Expected AS followed by a query")

            tail = self._budget_tail_start()
            end = self._tokens_size
            if tail is not None:
                self._tokens_size = tail  # the query must not see the budget's LIMIT/BUDGET
                self._advance(0)
            start = self._curr.start if self._curr else 0
            query = super()._parse_statement()
            span = (start, self._prev.end + 1 if self._prev else start)
            if self._index < self._tokens_size:
                self.raise_error("Invalid expression / Unexpected token")
            self._tokens_size = end
            self._advance(0)
            budget = self._parse_budget() if tail is not None else None

            view = self.expression(
                MaterializedView(
                    this=name,
                    options=options,
                    partitions=partitions,
                    expression=query,
                    budget=budget,
                )
            )
            view.meta[QUERY_SPAN] = span
            return view

        def _parse_view_option(self) -> exp.Expr:
            key = self._curr
            if not key or key.token_type == TokenType.IDENTIFIER:
                self.raise_error("Expected a materialized view option or AS")
            self._advance()
            name = key.text.upper()
            if not self._match(TokenType.EQ):
                self.raise_error(f"Expected = after {name}")
            value: exp.Expr | None
            if name == "TAGS":
                value = self.expression(exp.Tuple(expressions=self._parse_wrapped_csv(self._parse_string)))
            elif name in STRING_OPTIONS:
                value = self._parse_string()
                if value is None:
                    self.raise_error(f"{name} takes a quoted string")
            else:
                self.raise_error(f"Unknown materialized view option {key.text}", key)
                value = None
            return self.expression(exp.Property(this=exp.var(name), value=value))

        def _parse_partition_item(self) -> exp.Expr | None:
            column = self._parse_column()
            transform = self._curr
            if column is None or not transform or transform.text.upper() not in PARTITION_TRANSFORMS:
                self.raise_error("PARTITIONED_BY expects `column DAY|MONTH|YEAR`")
                return None
            self._advance()
            return self.expression(exp.Tuple(expressions=[column, exp.var(transform.text.upper())]))

        # -- BUDGET n USD | LIMIT n USD [PER period] -----------------------------------

        def _budget_tail_start(self) -> int | None:
            """Index of the budget clause that ends the statement, if there is one."""
            tokens, size = self._tokens, self._tokens_size
            for length in (5, 3):
                start = size - length
                if start <= self._index:
                    continue
                first, amount, unit = tokens[start], tokens[start + 1], tokens[start + 2]
                if amount.token_type != TokenType.NUMBER or not _token_is(unit, "USD"):
                    continue
                if length == 3 and _token_is(first, "BUDGET"):
                    return start
                if first.token_type != TokenType.LIMIT:
                    continue
                if length == 3:
                    return start
                per, period = tokens[start + 3], tokens[start + 4]
                if _token_is(per, "PER") and any(_token_is(period, p) for p in BUDGET_PERIODS):
                    return start
            return None

        def _parse_budget(self) -> exp.Expr:
            keyword = "LIMIT" if self._match(TokenType.LIMIT) else "BUDGET"
            if keyword == "BUDGET":
                self._advance()
            amount = self._parse_number()
            self._advance()  # USD
            period = None
            if self._match_text_seq("PER"):
                period = exp.var(self._curr.text.upper())
                self._advance()
            return self.expression(BudgetClause(this=amount, keyword=exp.var(keyword), period=period))

    class Generator(DuckDBGenerator):
        # Our node classes are not in sqlglot's registry, so name their handlers here.
        TRANSFORMS: ClassVar[dict[type[exp.Expr], Callable[..., str]]] = {
            **DuckDBGenerator.TRANSFORMS,
            MaterializedView: lambda self, e: self.materialized_view_sql(e),
            Explain: lambda self, e: self.explain_sql(e),
            BudgetClause: lambda self, e: self.budget_clause_sql(e),
        }

        def ordered_sql(self, expression: exp.Ordered) -> str:
            # Always explicit: DuckDB's own default (NULLS LAST both ways) differs from NQL's.
            this = self.sql(expression, "this")
            direction = " DESC" if expression.args.get("desc") else " ASC"
            nulls = " NULLS FIRST" if expression.args.get("nulls_first") else " NULLS LAST"
            return f"{this}{direction}{nulls}"

        def materialized_view_sql(self, expression: MaterializedView) -> str:
            parts = [f"CREATE MATERIALIZED VIEW {self.sql(expression, 'this')}"]
            for option in expression.args.get("options") or []:
                parts.append(f"{option.name}={self.sql(option, 'value')}")
            partitions = expression.args.get("partitions") or []
            if partitions:
                items = ", ".join(f"{self.sql(p.expressions[0])} {p.expressions[1].name}" for p in partitions)
                parts.append(f"PARTITIONED_BY {items}")
            parts.append(f"AS {self.sql(expression, 'expression')}")
            budget = self.sql(expression, "budget")
            return " ".join(parts + ([budget] if budget else []))

        def explain_sql(self, expression: Explain) -> str:
            return f"EXPLAIN {self.sql(expression, 'this')}"

        def budget_clause_sql(self, expression: BudgetClause) -> str:
            period = expression.args.get("period")
            per = f" PER {period.name}" if period else ""
            return f"{expression.args['keyword'].name} {self.sql(expression, 'this')} USD{per}"
