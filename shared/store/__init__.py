"""The jobs store: models, the state machine's operations, listing, datasets, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.store.db import make_engine, make_session_factory


@dataclass
class Store:
    """An engine and its session factory; one per process."""

    engine: Engine
    session_factory: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str) -> Store:
        engine = make_engine(url)
        return cls(engine, make_session_factory(engine))

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        if settings.store_url.startswith("sqlite"):
            settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
        return cls.from_url(settings.store_url)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on error."""
        with self.session_factory.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
