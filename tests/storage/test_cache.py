"""The worker's input cache over a real S3 server: fetched once per host, survives a
restart, evicts least recently used files, never one a run has pinned, and two processes
fetching the same object at once both get it whole."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import uuid
from pathlib import Path

import pytest

from shared.storage import Storage
from tests.s3 import ACCESS_KEY, SECRET_KEY, MotoServer
from worker.cache import InputCache


def _storage(endpoint: str, prefix: str) -> Storage:
    return Storage.s3(f"s3://dataplane-test/{prefix}", endpoint=endpoint,
                      access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)


@pytest.fixture
def remote(moto: MotoServer) -> Storage:
    return _storage(moto.endpoint, uuid.uuid4().hex)


def test_fetched_once_then_local_and_kept_across_restarts(remote: Storage, tmp_path: Path) -> None:
    remote.put_bytes("1/a.parquet", b"a" * 1000)
    cache = InputCache(tmp_path / "cache", remote, max_bytes=10_000)
    [first] = cache.pin(["1/a.parquet"], tmp_path / "run1")
    assert first.read_bytes() == b"a" * 1000 and cache.fetched_bytes == 1000
    cache.pin(["1/a.parquet"], tmp_path / "run2")
    assert cache.fetched_bytes == 1000  # the second run read the host's copy
    restarted = InputCache(tmp_path / "cache", remote, max_bytes=10_000)
    restarted.pin(["1/a.parquet"], tmp_path / "run3")
    assert restarted.fetched_bytes == 0


def test_eviction_is_lru_and_skips_pinned_files(remote: Storage, tmp_path: Path) -> None:
    for name in "abcd":
        remote.put_bytes(f"1/{name}.parquet", name.encode() * 400)
    cache = InputCache(tmp_path / "cache", remote, max_bytes=1000)
    pinned = cache.pin(["1/a.parquet"], tmp_path / "running")  # a run still reads a
    for name in "bc":
        cache.pin([f"1/{name}.parquet"], tmp_path / f"done-{name}")
        shutil.rmtree(tmp_path / f"done-{name}")  # that run ended: its pin is gone
    cache.pin(["1/d.parquet"], tmp_path / "done-d")
    shutil.rmtree(tmp_path / "done-d")
    cached = {p.name for p in (tmp_path / "cache" / "objects" / "1").iterdir()}
    # 1600 bytes cached > 1000: b and c, the least recently used unpinned, went first.
    assert cached == {"a.parquet", "d.parquet"}
    assert pinned[0].read_bytes() == b"a" * 400
    shutil.rmtree(tmp_path / "running")
    remote.put_bytes("1/e.parquet", b"e" * 400)
    cache.pin(["1/e.parquet"], tmp_path / "later")
    assert "a.parquet" not in {p.name for p in (tmp_path / "cache" / "objects" / "1").iterdir()}


def _pin_many(endpoint: str, prefix: str, cache_dir: str, run_dir: str, rounds: int) -> None:
    cache = InputCache(Path(cache_dir), _storage(endpoint, prefix), max_bytes=1 << 30)
    for index in range(rounds):
        [path] = cache.pin(["1/big.parquet"], Path(run_dir) / str(index))
        assert path.stat().st_size == 4 << 20
        shutil.rmtree(Path(run_dir) / str(index))
        if index % 5 == 4:  # and drop the cached copy now and then: fetch races again
            (Path(cache_dir) / "objects" / "1" / "big.parquet").unlink(missing_ok=True)


def test_two_processes_fetching_the_same_object_at_once(moto: MotoServer, tmp_path: Path) -> None:
    prefix = uuid.uuid4().hex
    payload = os.urandom(4 << 20)
    _storage(moto.endpoint, prefix).put_bytes("1/big.parquet", payload)
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as pool processes are
    workers = [spawn.Process(target=_pin_many, args=(moto.endpoint, prefix, str(tmp_path / "cache"),
                                                   str(tmp_path / f"run-{n}"), 20)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    objects = tmp_path / "cache" / "objects" / "1"
    assert [p.name for p in objects.iterdir()] in ([], ["big.parquet"])  # no temp files left
    for path in objects.iterdir():
        assert path.read_bytes() == payload
