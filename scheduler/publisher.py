"""What the dispatcher sends: one RUN_JOB_TASK message per job, routed by cluster, pool
and priority. `Publisher` is the seam between the sweep (store logic) and the broker,
so the sweep can be tested on its own and the broker client can be swapped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from shared.errors import InfrastructureError
from shared.queues import broker_priority, queue_for


class PublishFailed(InfrastructureError):
    """The broker did not take the message; the job stays unpublished for the next sweep."""


@dataclass(frozen=True, kw_only=True)
class RunJobMessage:
    job_id: uuid.UUID
    job_type: str
    cluster: str
    queue: str
    broker_priority: int

    @classmethod
    def for_job(cls, *, job_id: uuid.UUID, job_type: str, execution_cluster: str,
                compute_pool_id: uuid.UUID | None, priority: int) -> RunJobMessage:
        return cls(job_id=job_id, job_type=job_type, cluster=execution_cluster,
                   queue=queue_for(execution_cluster, compute_pool_id),
                   broker_priority=broker_priority(priority))

    @property
    def kwargs(self) -> dict[str, str]:
        """The task's keyword arguments: the contract with worker/."""
        return {"job_id": str(self.job_id), "job_type": self.job_type, "cluster": self.cluster}


class Publisher(Protocol):
    def publish(self, message: RunJobMessage) -> None:
        """Hand the message to the broker, or raise PublishFailed within a bounded time."""

    def close(self) -> None:
        """Release broker connections."""
