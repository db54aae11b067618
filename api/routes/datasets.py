"""`GET /datasets/{id}`, its snapshots, and a snapshot's column statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from api import errors
from api.datasets import dataset_to_wire, owned_dataset, owned_snapshot, snapshots_to_wire
from api.deps import CurrentPrincipal, StoreDep
from api.models.requests import INT64_MAX
from api.models.responses import ColumnStats, Dataset, SnapshotList
from shared.results import column_stats

router = APIRouter(prefix="/datasets", tags=["datasets"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.NOT_FOUND, **errors.DEFAULT})

DatasetId = Annotated[int, Path(ge=0, le=INT64_MAX)]
SnapshotId = Annotated[int, Path(ge=0, le=INT64_MAX)]


@router.get("/{dataset_id}", response_model=Dataset, summary="Get a dataset")
def get_dataset(dataset_id: DatasetId, principal: CurrentPrincipal,
                store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        dataset = owned_dataset(session, dataset_id, company_id=principal.company_id)
        return JSONResponse(dataset_to_wire(session, dataset))


@router.get("/{dataset_id}/snapshots", response_model=SnapshotList,
            summary="A dataset's snapshots, newest first")
def get_snapshots(dataset_id: DatasetId, principal: CurrentPrincipal,
                  store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        dataset = owned_dataset(session, dataset_id, company_id=principal.company_id)
        return JSONResponse(snapshots_to_wire(session, dataset))


@router.get("/{dataset_id}/snapshots/{snapshot_id}/column-stats", response_model=ColumnStats,
            summary="Column statistics of one snapshot")
def get_column_stats(dataset_id: DatasetId, snapshot_id: SnapshotId,
                     principal: CurrentPrincipal, store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        snapshot = owned_snapshot(session, dataset_id, snapshot_id,
                                  company_id=principal.company_id)
        return JSONResponse(column_stats(session, snapshot))
