"""The NQL compiler's catalog, backed by the store: what one company may read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.errors import DatasetNotFound, StoreUnavailable
from shared.nql.models import ResolvedDataset
from shared.store.db import is_disconnect
from shared.store.models import Dataset, Snapshot


def resolved(dataset: Dataset) -> ResolvedDataset:
    return ResolvedDataset(
        dataset_id=dataset.id, name=dataset.name, relation=f"ds_{dataset.id}",
        columns=tuple((name, type_) for name, type_ in dataset.schema),
    )


class StoreCatalog:
    """Resolves `company_data."123"` / `company_data.name` among one company's datasets.
    Another company's dataset is indistinguishable from a missing one."""

    def __init__(self, session: Session, company_id: int) -> None:
        self._session = session
        self._company_id = company_id

    def resolve(self, reference: str) -> ResolvedDataset:
        stmt = select(Dataset).where(Dataset.company_id == self._company_id)
        # The same test as PinnedCatalog's: the API and the worker must resolve alike.
        by = Dataset.id == int(reference) if _is_id(reference) else Dataset.name == reference
        stmt = stmt.where(by)
        try:
            dataset = self._session.scalars(stmt).one_or_none()
        except Exception as error:  # the compiler turns unknown errors into NQL errors
            if is_disconnect(error):
                raise StoreUnavailable("The jobs store is unavailable") from error
            raise
        # A dataset with no data yet (a view never materialized) cannot be read either.
        if dataset is None or not dataset.schema:
            raise DatasetNotFound(f"Dataset {reference!r} does not exist or is not accessible")
        return resolved(dataset)


@dataclass(frozen=True)
class Pinned:
    """A readable dataset and its snapshot that was current when it was read."""

    dataset: Dataset
    snapshot: Snapshot | None


class PinnedCatalog:
    """The datasets one statement names, each with its current snapshot, read in a single
    query (the worker's claim transaction): the compile resolves against these answers and
    the run reads exactly those snapshots. Same answers as `StoreCatalog`."""

    def __init__(self, pinned: Iterable[Pinned]) -> None:
        self._by_id: dict[int, Pinned] = {}
        self._by_name: dict[str, Pinned] = {}
        for item in pinned:
            self._by_id[item.dataset.id] = item
            self._by_name[item.dataset.name] = item

    @classmethod
    def read(cls, session: Session, company_id: int, references: Iterable[str]) -> PinnedCatalog:
        ids, names = [], []
        for reference in references:
            if _is_id(reference):
                ids.append(int(reference))
            else:
                names.append(reference)
        if not ids and not names:
            return cls(())
        stmt = (
            select(Dataset, Snapshot)
            .outerjoin(Snapshot, Snapshot.id == Dataset.current_snapshot_id)
            .where(Dataset.company_id == company_id, or_(Dataset.id.in_(ids), Dataset.name.in_(names)))
        )
        return cls(Pinned(dataset, snapshot) for dataset, snapshot in session.execute(stmt))

    def pinned(self, reference: str) -> Pinned:
        found = self._by_id.get(int(reference)) if _is_id(reference) else self._by_name.get(reference)
        # A dataset with no data yet (a view never materialized) cannot be read either.
        if found is None or not found.dataset.schema:
            raise DatasetNotFound(f"Dataset {reference!r} does not exist or is not accessible")
        return found

    def resolve(self, reference: str) -> ResolvedDataset:
        return resolved(self.pinned(reference).dataset)

    def by_id(self, dataset_id: int) -> Pinned:
        return self.pinned(str(dataset_id))


def _is_id(reference: str) -> bool:
    return reference.isascii() and reference.isdigit()
