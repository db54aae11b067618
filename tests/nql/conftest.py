from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from shared.nql import StaticCatalog

from .datasets import bind, catalog, write_test_data


@pytest.fixture(scope="session")
def nql_catalog() -> StaticCatalog:
    return catalog()


@pytest.fixture(scope="session")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_test_data(tmp_path_factory.mktemp("nql-data"))


@pytest.fixture(scope="session")
def bound_db(data_files: dict[str, Path]) -> Iterator[duckdb.DuckDBPyConnection]:
    con = bind(data_files)
    yield con
    con.close()
