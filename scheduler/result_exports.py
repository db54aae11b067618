"""Result exports of queries issued with a `result` URL (TD's `result` on job issue).

The query's TD row keeps the target (credentials encrypted); once the query is completed
this duty makes its `export` job, idempotently (the key is derived from the query's id, so
a crash between creating and linking cannot make a second one), and links the two.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select

from shared.config import Settings
from shared.errors import DataplaneError
from shared.export_target import Credentials, Target
from shared.exports import create_export, location_of
from shared.nudge import nudge_dispatcher
from shared.states import JobState, JobType
from shared.store import Store
from shared.store.models import Job, TdJob

log = logging.getLogger(__name__)


def idempotency_key(query_job_id: uuid.UUID) -> str:
    return f"result-export:{query_job_id}"


class ResultExports:
    name = "result-exports"
    on_nudge = False

    def __init__(self, *, settings: Settings, store: Store, actor: str = "scheduler") -> None:
        self.settings = settings
        self.store = store
        self.actor = actor
        self.interval = settings.dispatch_interval_seconds

    def run(self) -> None:
        if self.create_due():
            nudge_dispatcher(self.settings)

    def create_due(self, limit: int = 100) -> int:
        created = 0
        with self.store.unit_of_work() as session:
            rows = session.execute(
                select(TdJob, Job.user_id, Job.priority, Job.retry_limit)
                .join(Job, Job.id == TdJob.job_id)
                .where(TdJob.result_url_encrypted.is_not(None),
                       TdJob.td_type != JobType.EXPORT.value,
                       TdJob.linked_result_export_job_id.is_(None),
                       Job.state == JobState.COMPLETED.value)
                .limit(limit)).all()
            for td, user_id, priority, retry_limit in rows:
                assert td.export_spec is not None and td.result_url_encrypted is not None
                # Credentials stay encrypted: the target is rebuilt without them.
                target = Target(location_of(td.export_spec), Credentials("", ""))
                try:
                    job, _ = create_export(
                        session, self.settings, company_id=td.company_id, user_id=user_id,
                        source={"kind": "job", "job_id": str(td.job_id)}, target=target,
                        idempotency_key=idempotency_key(td.job_id), priority=priority,
                        retry_limit=retry_limit, database=td.database,
                        encrypted=td.result_url_encrypted, user_actor=self.actor)
                except DataplaneError as error:
                    log.warning("job %s: cannot create its result export: %s", td.job_id,
                                error.message)
                    continue
                td.linked_result_export_job_id = job.id
                created += 1
        return created
