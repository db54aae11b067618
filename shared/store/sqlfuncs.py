"""Small SQL constructs that differ by backend, so state changes stay single UPDATEs."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.functions import FunctionElement

from shared.store.types import JSONType


class json_array_append(FunctionElement[Any]):
    """`column` (a JSON array) with one element appended, computed in the UPDATE itself."""

    type = JSONType
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any] | Any, element: dict[str, Any]) -> None:
        self.column = column
        self.element: BindParameter[str] = bindparam(None, json.dumps(element, default=str), unique=True)
        super().__init__(column, self.element)


@compiles(json_array_append, "postgresql")
def _append_pg(element: json_array_append, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    value = compiler.process(element.element, **kw)
    return f"(COALESCE({column}, '[]'::jsonb) || jsonb_build_array(CAST({value} AS JSONB)))"


@compiles(json_array_append, "sqlite")
def _append_sqlite(element: json_array_append, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    value = compiler.process(element.element, **kw)
    return f"json_insert(COALESCE({column}, '[]'), '$[#]', json({value}))"
