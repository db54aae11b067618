"""The NQL compiler's catalog, backed by the store: what one company may read."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import DatasetNotFound, StoreUnavailable
from shared.nql.models import ResolvedDataset
from shared.store.db import is_disconnect
from shared.store.models import Dataset


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
        if reference.isdigit():
            stmt = stmt.where(Dataset.id == int(reference))
        else:
            stmt = stmt.where(Dataset.name == reference)
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
