"""Alembic migrations of the jobs store; `shared.store.migrate` drives them."""
