"""`dataplane companies set|list` and `dataplane jobs show`'s wait_reason, on PostgreSQL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dataplane.cli import main
from shared.store import Store
from shared.store.fairshare import NO_WORKER, company_rows
from tests.scheduler.helpers import new_job


@pytest.fixture
def env(pg_database: str, pg_store: Store) -> dict[str, str]:
    return {"DATAPLANE_DATABASE_URL": pg_database,
            "DATAPLANE_SHARED_MAX_RUNNING_PER_COMPANY": "4"}


def test_set_and_list_weight_and_cap(env: dict[str, str], pg_store: Store) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["companies", "set", "--company-id", "7", "--weight", "3"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"company_id": 7, "weight": 3, "max_running": None,
                                         "effective_shared_max_running": 4}
    result = runner.invoke(main, ["companies", "set", "--company-id", "7", "--max-running", "2"],
                           env=env)
    assert json.loads(result.output)["effective_shared_max_running"] == 2
    result = runner.invoke(main, ["companies", "set", "--company-id", "8", "--max-running", "0"],
                           env=env)
    assert json.loads(result.output)["effective_shared_max_running"] is None  # 0: no cap

    listed = json.loads(runner.invoke(main, ["companies", "list"], env=env).output)
    assert [(c["company_id"], c["weight"], c["max_running"]) for c in listed["companies"]] == [
        (7, 3, 2), (8, 1, 0)]
    assert listed["default"] == {"weight": 1, "shared_max_running": 4}
    with pg_store.unit_of_work() as session:
        assert company_rows(session)[7].weight == 3

    result = runner.invoke(main, ["companies", "set", "--company-id", "7",
                                  "--default-max-running"], env=env)
    assert json.loads(result.output)["max_running"] is None
    bad = runner.invoke(main, ["companies", "set", "--company-id", "7", "--weight", "0"], env=env)
    assert bad.exit_code != 0 and "--weight" in bad.output
    nothing = runner.invoke(main, ["companies", "set", "--company-id", "7"], env=env)
    assert nothing.exit_code != 0


def test_jobs_show_says_why_a_pending_job_waits(env: dict[str, str], pg_store: Store) -> None:
    job_id = new_job(pg_store)
    result = CliRunner().invoke(main, ["jobs", "show", str(job_id), "--no-transitions"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["wait_reason"] == NO_WORKER
