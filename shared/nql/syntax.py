"""Text -> one statement tree, with syntax errors reported at a 1-based line and column."""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError

from shared.errors import ForbiddenConstruct, NQLError, NQLSyntaxError
from shared.nql.dialect import NQL

MAX_NQL_CHARS = 100_000
MAX_NODES = 20_000  # bounds parser work on hostile input; real statements use a few hundred


def position(sql: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    offset = max(0, min(offset, len(sql)))
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return line, column


_TOKEN_REPR = re.compile(r"<Token token_type: [^,]*, text: (.*?), line: \d+, col: .*?>", re.S)
_CLASS_REPR = re.compile(r"<class '[\w.]*\.(\w+)'>")


def _syntax_error(sql: str, error: ParseError) -> NQLSyntaxError:
    first = error.errors[0] if error.errors else {}
    description = str(first.get("description") or error)
    # sqlglot's messages may embed a Token repr; the user only needs its text.
    description = _TOKEN_REPR.sub(lambda m: repr(m.group(1)), description)
    description = _CLASS_REPR.sub(lambda m: m.group(1), description)
    start = first.get("start")
    if isinstance(start, int):
        line, column = position(sql, start)
    else:
        line, column = first.get("line") or 1, first.get("col") or 1
    return NQLSyntaxError(f"Syntax error at line {line}, column {column}: {description}", line=line, column=column)


def parse_statement(sql: str) -> exp.Expr:
    """Parse exactly one NQL statement; raises only `NQLError` subclasses."""
    if len(sql) > MAX_NQL_CHARS:
        raise NQLError(f"The statement is longer than {MAX_NQL_CHARS} characters")
    dialect = NQL()
    tokenizer = dialect.tokenizer()
    try:
        tokens = tokenizer.tokenize(sql)
    except TokenError as e:
        # The failing token's start offset lives on sqlglot's tokenizer core (private, so
        # read defensively: without it we still report an error, at 1:1).
        core = getattr(tokenizer, "_core", tokenizer)
        start = getattr(core, "_start", 0)
        line, column = position(sql, start if isinstance(start, int) else 0)
        raise NQLSyntaxError(
            f"Syntax error at line {line}, column {column}: unterminated string, identifier "
            "or comment, or an invalid character",
            line=line,
            column=column,
        ) from e
    try:
        statements = [s for s in dialect.parser(max_nodes=MAX_NODES).parse(tokens, sql) if s is not None]
    except ParseError as e:
        raise _syntax_error(sql, e) from e
    except SqlglotError as e:
        raise NQLSyntaxError(f"Syntax error: {e}") from e
    except RecursionError as e:
        raise NQLError("The statement is nested too deeply") from e
    if not statements:
        raise NQLSyntaxError("The statement is empty", line=1, column=1)
    if len(statements) > 1:
        raise ForbiddenConstruct("Only one statement is allowed: remove the extra `;` statements")
    return statements[0]
