"""Webhook subscriptions (issue 16), after Narrative's `webhook_subscription_jobs`:

    POST   /webhooks                      201 with the subscription and its `secret` (shown once)
    GET    /webhooks                      the company's subscriptions (no secrets)
    GET    /webhooks/{id}
    DELETE /webhooks/{id}                 204; its undelivered events are dropped
    GET    /webhooks/{id}/deliveries      paged, newest first

Another company's subscription is a 404, as a missing one. The URL rules are in
shared/webhook_urls.py; a refused URL is a 400 naming its rule.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api import errors
from api.deps import CurrentPrincipal, SettingsDep, StoreDep
from api.models.requests import INT64_MAX, ShortText
from shared.states import JobState, JobType
from shared.store.webhooks import (
    MAX_PER_PAGE,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_deliveries,
    list_subscriptions,
    subscription_to_wire,
)
from shared.webhook_urls import check_url

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses={
    **errors.BAD_REQUEST, **errors.UNAUTHORIZED, **errors.DEFAULT})

MAX_FILTER_VALUES = 100


class SubscriptionRequest(BaseModel):
    """Empty filters match everything; a job must match every non-empty one."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook_subscription_jobs"] = "webhook_subscription_jobs"
    name: ShortText
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    job_ids: Annotated[list[uuid.UUID], Field(max_length=MAX_FILTER_VALUES)] = []
    job_types: Annotated[list[JobType], Field(max_length=MAX_FILTER_VALUES)] = []
    states: Annotated[list[JobState], Field(max_length=MAX_FILTER_VALUES)] = []


@router.post("", status_code=201, summary="Subscribe a URL to job state changes; the answer "
             "holds the signing `secret`, shown only this once")
def post_webhook(body: SubscriptionRequest, principal: CurrentPrincipal, store: StoreDep,
                 settings: SettingsDep) -> JSONResponse:
    check_url(body.url, allow_private=settings.webhook_allow_private)
    with store.unit_of_work() as session:
        row = create_subscription(
            session, company_id=principal.company_id, user_id=principal.user_id, name=body.name,
            url=body.url, job_ids=body.job_ids, job_types=[t.value for t in body.job_types],
            states=[s.value for s in body.states])
        wire = subscription_to_wire(row, with_secret=True)
    return JSONResponse(wire, status_code=201)


@router.get("", summary="The company's webhook subscriptions")
def get_webhooks(principal: CurrentPrincipal, store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        rows = list_subscriptions(session, company_id=principal.company_id)
        return JSONResponse({"records": [subscription_to_wire(row) for row in rows]})


@router.get("/{subscription_id}", responses=errors.NOT_FOUND, summary="A webhook subscription")
def get_webhook(subscription_id: uuid.UUID, principal: CurrentPrincipal,
                store: StoreDep) -> JSONResponse:
    with store.unit_of_work() as session:
        return JSONResponse(subscription_to_wire(
            get_subscription(session, subscription_id, company_id=principal.company_id)))


@router.delete("/{subscription_id}", status_code=204, responses=errors.NOT_FOUND,
               summary="Delete a subscription (its undelivered events are dropped)")
def delete_webhook(subscription_id: uuid.UUID, principal: CurrentPrincipal,
                   store: StoreDep) -> Response:
    with store.unit_of_work() as session:
        delete_subscription(session, subscription_id, company_id=principal.company_id)
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", responses=errors.NOT_FOUND,
            summary="A subscription's deliveries, newest first: event, attempts, last status "
                    "code, next retry")
def get_deliveries(
    subscription_id: uuid.UUID, principal: CurrentPrincipal, store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Records to skip")] = 0,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 100,
) -> JSONResponse:
    with store.unit_of_work() as session:
        return JSONResponse(list_deliveries(session, subscription_id,
                                            company_id=principal.company_id,
                                            offset=offset, per_page=per_page))
