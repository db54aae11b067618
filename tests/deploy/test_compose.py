"""docker-compose.yml checked as data (there is no Docker engine here): services,
commands that the CLI really accepts, DATAPLANE_* configuration, healthchecks, scaling."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dataplane.cli import main
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DATAPLANE_SERVICES = {"migrate", "api", "scheduler", "worker-shared", "worker-dedicated", "flower"}
LONG_RUNNING = DATAPLANE_SERVICES - {"migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == DATAPLANE_SERVICES | {"redis", "postgres", "s3", "create-bucket"}


def test_one_image_built_from_the_repo_dockerfile(compose: dict[str, Any]) -> None:
    images = set()
    for name in DATAPLANE_SERVICES:
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert (ROOT / service["build"]["context"] / "Dockerfile").is_file()
        images.add(service["image"])
    assert len(images) == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert ".[flower]" in dockerfile  # flower's command must exist in the image
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M), "workers must not run as root"


@pytest.mark.parametrize("name", sorted(DATAPLANE_SERVICES - {"flower"}))
def test_commands_are_real_cli_invocations(compose: dict[str, Any], name: str) -> None:
    command = compose["services"][name]["command"]
    assert command[0] == "dataplane"
    # Options are parsed before the eager --help, so an unknown command or option fails here.
    result = CliRunner().invoke(main, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_flower_command(compose: dict[str, Any]) -> None:
    command = compose["services"]["flower"]["command"]
    assert command[:4] == ["celery", "-A", "shared.celery_app", "flower"]
    import shared.celery_app

    assert shared.celery_app.app.main


def test_configuration_only_through_dataplane_env(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name in DATAPLANE_SERVICES:
        env = compose["services"][name]["environment"]
        assert env, name
        for key in env:
            assert key.startswith("DATAPLANE_"), key
            assert key.removeprefix("DATAPLANE_").lower() in fields, f"{key} is not a setting"
        assert env["DATAPLANE_DATABASE_URL"].startswith("postgresql://")
        assert env["DATAPLANE_BROKER_URL"].startswith("redis://redis:")


def test_hosts_share_only_the_bucket(compose: dict[str, Any]) -> None:
    """No shared data volume: snapshots live in the s3 service's bucket, reached by URL."""
    services = compose["services"]
    for name in DATAPLANE_SERVICES:
        service = services[name]
        assert not service.get("volumes"), f"{name} mounts a volume: hosts must share no filesystem"
        env = service["environment"]
        settings = Settings(**{key.removeprefix("DATAPLANE_").lower(): value for key, value in env.items()
                               if key.startswith("DATAPLANE_S3_") or key == "DATAPLANE_STORAGE_URL"})
        assert settings.storage_url.startswith("s3://"), name
        assert env["DATAPLANE_S3_ENDPOINT_URL"] == "http://s3:8333", name
    assert "s3-data:/data" in services["s3"]["volumes"]
    assert "dataplane-data" not in compose.get("volumes", {})
    # The bucket exists before any process that checks storage at start.
    bucket = compose["services"]["create-bucket"]
    assert bucket["depends_on"]["s3"]["condition"] == "service_healthy"
    assert "s3.bucket.create -name dataplane" in " ".join(bucket["command"])
    assert compose["x-dataplane-env"]["DATAPLANE_STORAGE_URL"] == "s3://dataplane/snapshots"
    for name in ("api", "scheduler", "worker-shared", "worker-dedicated"):
        assert services[name]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    # Credentials come from the operator's environment, and the bucket server is given the same.
    config = compose["configs"]["seaweedfs-s3"]["content"]
    assert "${DATAPLANE_S3_ACCESS_KEY_ID" in config and "${DATAPLANE_S3_SECRET_ACCESS_KEY" in config


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING | {"redis", "postgres", "s3"}:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"] and check["retries"] >= 1, name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "scheduler", "worker-shared", "worker-dedicated"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_workers_scale(compose: dict[str, Any]) -> None:
    for name in ("worker-shared", "worker-dedicated"):
        service = compose["services"][name]
        # --scale needs no fixed container name and no host port.
        assert "container_name" not in service and "ports" not in service
    clusters = {compose["services"][n]["command"][3] for n in ("worker-shared", "worker-dedicated")}
    assert clusters == {"shared", "dedicated"}


def test_scheduler_healthcheck_reads_its_liveness_file(compose: dict[str, Any]) -> None:
    scheduler = compose["services"]["scheduler"]
    path = scheduler["environment"]["DATAPLANE_SCHEDULER_LIVENESS_FILE"]
    assert path in " ".join(scheduler["healthcheck"]["test"])


def test_worker_healthcheck_pings_its_own_node(compose: dict[str, Any]) -> None:
    from shared.queues import worker_queue

    for cluster in ("shared", "dedicated"):
        check = " ".join(compose["services"][f"worker-{cluster}"]["healthcheck"]["test"])
        assert f"--destination {worker_queue(cluster, None)}.1@$HOSTNAME" in check.replace("$$", "$")


def test_redis_keeps_the_queue(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
