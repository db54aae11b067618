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
from typing import Any, ClassVar

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
# Table meta flag: the table was written `DELTA(TABLE <dataset>)` (read only what is new).
DELTA_TABLE = "nql_delta"


class MaterializedView(exp.Expression):
    """`CREATE MATERIALIZED VIEW this options... AS expression [budget]`."""

    arg_types: ClassVar[dict[str, bool]] = {
        "this": True,  # Identifier: the view name
        "options": False,  # list[exp.Property]; TAGS has a Tuple value
        "partitions": False,  # list[exp.Tuple(column, Var(transform))]
        "expression": True,  # the query
        "budget": False,  # BudgetClause
        "merge": False,  # MergeClause
    }


class MergeClause(exp.Expression):
    """`MERGE ON cond WHEN [NOT] MATCHED [AND c] THEN ...` after a view's query (and budget):
    the query's rows (`source`) merged into the view's current rows (`target`)."""

    arg_types: ClassVar[dict[str, bool]] = {"on": True, "whens": True}


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

        def _parse_function(self, *args: Any, **kwargs: Any) -> exp.Expr | None:
            # Remember where a call starts (sqlglot keeps positions on identifiers only), so
            # an error about a function can say where it is.
            token = self._curr
            node = super()._parse_function(*args, **kwargs)
            if node is not None and token is not None and "start" not in node.meta:
                node.meta.update(line=token.line, col=token.col, start=token.start, end=token.end)
            return node

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

            end = self._tokens_size
            merge_at = self._merge_tail_start()
            if merge_at is not None:
                self._tokens_size = merge_at  # the query and the budget end where MERGE starts
                self._advance(0)
            query_end = self._tokens_size
            tail = self._budget_tail_start()
            if tail is not None:
                self._tokens_size = tail  # the query must not see the budget's LIMIT/BUDGET
                self._advance(0)
            start = self._curr.start if self._curr else 0
            query = super()._parse_statement()
            span = (start, self._prev.end + 1 if self._prev else start)
            if self._index < self._tokens_size:
                self.raise_error("Invalid expression / Unexpected token")
            self._tokens_size = query_end
            self._advance(0)
            budget = self._parse_budget() if tail is not None else None
            self._tokens_size = end
            self._advance(0)
            merge = self._parse_merge_clause() if merge_at is not None else None

            view = self.expression(
                MaterializedView(
                    this=name,
                    options=options,
                    partitions=partitions,
                    expression=query,
                    budget=budget,
                    merge=merge,
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

        # -- MERGE ON ... WHEN ... ------------------------------------------------------

        def _merge_tail_start(self) -> int | None:
            """Index of a top-level `MERGE ON` after the query, if there is one."""
            depth = 0
            for index in range(self._index, self._tokens_size - 1):
                token = self._tokens[index]
                if token.token_type == TokenType.L_PAREN:
                    depth += 1
                elif token.token_type == TokenType.R_PAREN:
                    depth -= 1
                elif depth == 0 and _token_is(token, "MERGE") and \
                        self._tokens[index + 1].token_type == TokenType.ON:
                    return index
            return None

        def _parse_merge_clause(self) -> exp.Expr:
            self._advance()  # MERGE
            self._match(TokenType.ON)
            on = self._parse_disjunction()
            if on is None:
                self.raise_error("Expected a condition after MERGE ON")
            whens = self._parse_when_matched()
            if not whens.expressions:
                self.raise_error("MERGE needs WHEN MATCHED / WHEN NOT MATCHED clauses")
            if self._index < self._tokens_size:
                self.raise_error("Unexpected token after the MERGE clause")
            return self.expression(MergeClause(on=on, whens=whens))

        # -- DELTA(TABLE <dataset>) ------------------------------------------------------

        def _parse_table(self, *args: Any, **kwargs: Any) -> exp.Expr | None:
            if (self._curr and self._next and _token_is(self._curr, "DELTA")
                    and self._next.token_type == TokenType.L_PAREN):
                start = self._curr
                self._advance(2)
                if not self._match(TokenType.TABLE):
                    self.raise_error('DELTA takes a dataset: DELTA(TABLE company_data."<id>")', start)
                table = self._parse_table_parts()
                if table is None or not self._match(TokenType.R_PAREN):
                    self.raise_error("Expected ) to close DELTA(TABLE ...)")
                    return None
                table.meta[DELTA_TABLE] = True
                alias = self._parse_table_alias()
                if alias:
                    table.set("alias", alias)
                return table
            return super()._parse_table(*args, **kwargs)

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
            MergeClause: lambda self, e: self.merge_clause_sql(e),
        }

        def ordered_sql(self, expression: exp.Ordered) -> str:
            # Always explicit: DuckDB's own default (NULLS LAST both ways) differs from NQL's.
            this = self.sql(expression, "this")
            direction = " DESC" if expression.args.get("desc") else " ASC"
            nulls = " NULLS FIRST" if expression.args.get("nulls_first") else " NULLS LAST"
            return f"{this}{direction}{nulls}"

        def table_sql(self, expression: exp.Table, sep: str = " AS ") -> str:
            if not expression.meta.get(DELTA_TABLE):
                return super().table_sql(expression, sep)
            bare = expression.copy()
            bare.meta.pop(DELTA_TABLE, None)
            alias = bare.args.get("alias")
            bare.set("alias", None)
            text = f"DELTA(TABLE {super().table_sql(bare, sep)})"
            return f"{text}{sep}{self.sql(alias)}" if alias else text

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
            merge = self.sql(expression, "merge")
            return " ".join(parts + ([budget] if budget else []) + ([merge] if merge else []))

        def merge_clause_sql(self, expression: MergeClause) -> str:
            return f"MERGE ON {self.sql(expression, 'on')} {self.sql(expression, 'whens')}"

        def explain_sql(self, expression: Explain) -> str:
            return f"EXPLAIN {self.sql(expression, 'this')}"

        def budget_clause_sql(self, expression: BudgetClause) -> str:
            period = expression.args.get("period")
            per = f" PER {period.name}" if period else ""
            return f"{expression.args['keyword'].name} {self.sql(expression, 'this')} USD{per}"
