"""Migrations from empty give the same schema on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from shared.store.migrate import check
from shared.store.models import Base


def _shape(url: str) -> dict[str, tuple[set[str], set[str], set[str]]]:
    engine = create_engine(url)
    inspector = inspect(engine)
    shape = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        columns = {c["name"] for c in inspector.get_columns(table)}
        uniques = {u["name"] for u in inspector.get_unique_constraints(table) if u["name"]}
        # PostgreSQL lists a unique constraint's backing index as an index too.
        indexes = {i["name"] for i in inspector.get_indexes(table) if i["name"]} - uniques
        shape[table] = (columns, indexes, uniques)
    engine.dispose()
    return shape


def test_same_tables_on_both_backends(sqlite_database: str, pg_database: str) -> None:
    sqlite_shape, pg_shape = _shape(sqlite_database), _shape(pg_database)
    assert set(sqlite_shape) == set(Base.metadata.tables)
    assert sqlite_shape.keys() == pg_shape.keys()
    for table in sqlite_shape:
        assert sqlite_shape[table][0] == pg_shape[table][0], table
        assert sqlite_shape[table][1] == pg_shape[table][1], table
        assert sqlite_shape[table][2] == pg_shape[table][2], table


def test_models_match_migrations(sqlite_database: str, pg_database: str) -> None:
    # alembic check raises when autogenerate would emit any operation.
    check(sqlite_database)
    check(pg_database)
