"""How the compiler finds datasets: a `Catalog` resolves `company_data.<reference>`.

A catalog only knows the datasets the calling company may read, so a dataset of another
company is indistinguishable from one that does not exist (no existence leak).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from shared.errors import DatasetNotFound
from shared.nql.models import ResolvedDataset


def not_found(reference: str) -> DatasetNotFound:
    """The one message for a missing or foreign dataset."""
    return DatasetNotFound(f"Dataset {reference!r} does not exist or is not accessible", reference=reference)


class Catalog(Protocol):
    def resolve(self, reference: str) -> ResolvedDataset:
        """`reference` is the text after `company_data.`: all digits -> id, else unique name.

        Raises `DatasetNotFound` (see `not_found`) when the dataset is not readable.
        """
        ...


class StaticCatalog:
    """A `Catalog` over a fixed list of datasets (tests, benchmarks, the worker's snapshot)."""

    def __init__(self, datasets: Iterable[ResolvedDataset]) -> None:
        self._by_id: dict[int, ResolvedDataset] = {}
        self._by_name: dict[str, ResolvedDataset] = {}
        for dataset in datasets:
            self._by_id[dataset.dataset_id] = dataset
            self._by_name[dataset.name] = dataset

    def resolve(self, reference: str) -> ResolvedDataset:
        if reference.isascii() and reference.isdigit():
            found = self._by_id.get(int(reference))
        else:
            found = self._by_name.get(reference)
            if found is None:
                # Unquoted names are case-insensitive in NQL, like any identifier.
                matches = [d for n, d in self._by_name.items() if n.lower() == reference.lower()]
                found = matches[0] if len(matches) == 1 else None
        if found is None:
            raise not_found(reference)
        return found
