"""Job listing exactly as seed 001 + DESIGN.md: filters, order, offset/per_page pages.

One query for the page and one COUNT, both served by the (company_id, ...) indexes."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from shared.errors import InvalidRequest
from shared.store.models import Job, JobTag

MAX_PER_PAGE = 500


class JobOrder(StrEnum):
    CREATED_AT_DESC = "created_at_desc"
    CREATED_AT_ASC = "created_at_asc"
    UPDATED_AT_ASC = "updated_at_asc"
    UPDATED_AT_DESC = "updated_at_desc"


@dataclass(frozen=True, kw_only=True)
class JobFilter:
    company_id: int
    data_plane_id: uuid.UUID | None = None
    dataset_id: int | None = None
    states: Sequence[str] = ()
    types: Sequence[str] = ()
    tags: Sequence[str] = ()  # any of them
    idempotency_key: str | None = None


@dataclass(frozen=True)
class JobPage:
    records: list[Job]
    current_page: int
    total_records: int
    total_pages: int
    prev_page: int | None
    next_page: int | None


def _conditions(filters: JobFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Job.company_id == filters.company_id]
    if filters.data_plane_id is not None:
        where.append(Job.data_plane_id == filters.data_plane_id)
    if filters.dataset_id is not None:
        where.append(Job.dataset_id == filters.dataset_id)
    if filters.states:
        where.append(Job.state.in_(list(filters.states)))
    if filters.types:
        where.append(Job.type.in_(list(filters.types)))
    if filters.tags:
        tagged = select(JobTag.job_id).where(JobTag.company_id == filters.company_id,
                                             JobTag.tag.in_(list(filters.tags)))
        where.append(Job.id.in_(tagged))
    if filters.idempotency_key is not None:
        where.append(Job.idempotency_key == filters.idempotency_key)
    return where


_ORDER = {
    JobOrder.CREATED_AT_DESC: (Job.created_at.desc(), Job.id.desc()),
    JobOrder.CREATED_AT_ASC: (Job.created_at.asc(), Job.id.asc()),
    JobOrder.UPDATED_AT_DESC: (Job.updated_at.desc(), Job.id.desc()),
    JobOrder.UPDATED_AT_ASC: (Job.updated_at.asc(), Job.id.asc()),
}


def page_numbers(*, offset: int, per_page: int, total_records: int) -> tuple[int, int, int | None, int | None]:
    """(current_page, total_pages, prev_page, next_page), 1-based. prev_page of a page past
    the end is the last existing page (seed 001)."""
    current = offset // per_page + 1
    total_pages = math.ceil(total_records / per_page)
    if current > 1:
        prev_page: int | None = min(current - 1, total_pages) if total_pages else None
    else:
        prev_page = None
    next_page = current + 1 if current < total_pages else None
    return current, total_pages, prev_page, next_page


def list_jobs(session: Session, filters: JobFilter, *, order_by: JobOrder = JobOrder.CREATED_AT_DESC,
              offset: int = 0, per_page: int = MAX_PER_PAGE) -> JobPage:
    if per_page < 1 or per_page > MAX_PER_PAGE:
        raise InvalidRequest(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
    if offset < 0:
        raise InvalidRequest(f"offset must be >= 0, got {offset}")
    where = _conditions(filters)
    total = session.scalar(select(func.count(Job.id)).where(*where)) or 0
    records = list(session.scalars(
        select(Job).where(*where).order_by(*_ORDER[order_by]).offset(offset).limit(per_page)))
    current, total_pages, prev_page, next_page = page_numbers(
        offset=offset, per_page=per_page, total_records=total)
    return JobPage(records, current, total, total_pages, prev_page, next_page)
