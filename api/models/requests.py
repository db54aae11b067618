"""Request bodies. Unknown fields are rejected (400), so a client can never set fields the
server decides, such as `request_source`; numbers and booleans are strict (`"2"` is not 2)."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

from shared.states import ExecutionCluster

MAX_TAGS = 50
MAX_RETRY_LIMIT = 10
MAX_KEY_LENGTH = 255  # idempotency keys and tags are VARCHAR(255) in the store
INT64_MAX = 2**63 - 1  # ids, offsets: BIGINT in the store, so larger is a 400, not a 500


def storable(value: str) -> str:
    r"""A JSON string may hold a lone surrogate (`"\ud800"`), which PostgreSQL cannot store:
    a 400 here rather than a driver error (a 500) later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("must be valid Unicode text") from e
    return value


# PostgreSQL text cannot hold NUL either; as a pattern the rule is in the OpenAPI document.
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH,
                                             pattern=NO_NUL), AfterValidator(storable)]
NQLText = Annotated[str, StringConstraints(min_length=1, pattern=NO_NUL),
                    AfterValidator(storable)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecutionClusterObject(_Body):
    """Narrative's request form of the cluster: `{"type": "shared"}`."""

    type: ExecutionCluster


class RunRequest(_Body):
    """`POST /nql/run`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"nql": 'EXPLAIN SELECT "user_id", "amount" FROM company_data.events '
                'WHERE "amount" > 10'},
        {"nql": 'CREATE MATERIALIZED VIEW "big_spenders" TAGS = (\'team_a\') AS '
                'SELECT "user_id", "amount" FROM company_data.events WHERE "amount" > 10',
         "execution_cluster": {"type": "shared"}, "tags": ["nightly"],
         "idempotency_key": "big-spenders-2024-06-01", "priority": 1},
    ]})

    nql: NQLText = Field(description="CREATE MATERIALIZED VIEW ... or EXPLAIN <select>")
    data_plane_id: uuid.UUID | None = None
    execution_cluster: ExecutionCluster | ExecutionClusterObject | None = Field(
        default=None,
        description="'shared' (default) or 'dedicated', also as {\"type\": ...}; "
                    "'dedicated' when only compute_pool_id is given")
    compute_pool_id: uuid.UUID | None = Field(
        default=None, description="Runs on the workers of this pool (a dedicated cluster)")
    tags: list[ShortText] = Field(default_factory=list, max_length=MAX_TAGS,
                                  description="Added to the view's TAGS option")
    idempotency_key: ShortText | None = Field(
        default=None, description="The same key again from the same company returns the "
                                  "existing job (200) instead of creating one")
    stats_enabled: StrictBool | None = Field(
        default=None, description="Default true (false when the view says EXTENDED_STATS='none')")
    priority: StrictInt = Field(default=0, ge=-2, le=2, description="2 is the most urgent")
    retry_limit: StrictInt = Field(default=0, ge=0, le=MAX_RETRY_LIMIT,
                                   description="Runs again after infrastructure errors")

    def cluster(self) -> ExecutionCluster | None:
        if isinstance(self.execution_cluster, ExecutionClusterObject):
            return self.execution_cluster.type
        return self.execution_cluster


class ValidateRequest(_Body):
    """`POST /nql/validate`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"nql": 'SELECT "user_id" FROM company_data.events'}]})

    nql: NQLText
