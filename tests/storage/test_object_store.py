"""shared/storage.py against a real S3 server (moto_server, over HTTP) and local files:
create-only puts, listing, ranged reads, deletes, and one clear line for bad settings."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.storage import ObjectExists, ObjectNotFound, Storage, StorageError, StorageMisconfigured
from tests.s3 import ACCESS_KEY, SECRET_KEY, MotoServer, free_port


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "file":
        return Storage.local(tmp_path / "objects")
    server: MotoServer = request.getfixturevalue("moto")
    return Storage.s3(f"s3://dataplane-test/{uuid.uuid4().hex}", endpoint=server.endpoint,
                      access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)


def test_create_only_puts(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"first")
    assert storage.put_file("7/a.bin", source) == 5
    source.write_bytes(b"second")
    with pytest.raises(ObjectExists):
        storage.put_file("7/a.bin", source)
    with pytest.raises(ObjectExists):
        storage.put_bytes("7/a.bin", b"third")
    assert storage.get_bytes("7/a.bin") == b"first"  # never overwritten


def test_list_read_delete(storage: Storage, tmp_path: Path) -> None:
    for name in ("1/x.parquet", "1/y.parquet", "2/z.parquet"):
        storage.put_bytes(name, name.encode())
    assert {o.key for o in storage.list("1/")} == {"1/x.parquet", "1/y.parquet"}
    assert {o.key for o in storage.list()} == {"1/x.parquet", "1/y.parquet", "2/z.parquet"}
    assert all(o.size == 11 and o.last_modified.tzinfo is not None for o in storage.list())
    assert storage.read_range("1/x.parquet", 2, 3) == b"x.p"
    assert storage.size("2/z.parquet") == 11
    storage.download("2/z.parquet", tmp_path / "down" / "z")
    assert (tmp_path / "down" / "z").read_bytes() == b"2/z.parquet"
    assert not list((tmp_path / "down").glob(".*"))  # no temp file left behind
    storage.delete(["1/x.parquet", "1/missing.parquet"])  # missing keys are fine
    assert {o.key for o in storage.list()} == {"1/y.parquet", "2/z.parquet"}
    with pytest.raises(ObjectNotFound, match="no such object"):
        storage.get_bytes("1/x.parquet")


def test_keys_cannot_escape(storage: Storage) -> None:
    for key in ("../x", "1/../../x", "/etc/passwd", "1//x", ""):
        with pytest.raises(ValueError):
            storage.put_bytes(key, b"x")


def test_parquet_footer_and_one_row_group_by_ranged_reads(storage: Storage, tmp_path: Path) -> None:
    table = pa.table({"n": list(range(10_000)), "s": [f"row {i}" for i in range(10_000)]})
    local = tmp_path / "t.parquet"
    pq.write_table(table, local, row_group_size=1000)
    storage.put_file("3/t.parquet", local)
    with storage.open("3/t.parquet") as handle:
        parquet = pq.ParquetFile(handle)
        assert parquet.metadata.num_rows == 10_000 and parquet.metadata.num_row_groups == 10
        assert parquet.read_row_group(7).column("n")[0].as_py() == 7000


@pytest.fixture
def strict_moto(tmp_path: Path) -> Iterator[MotoServer]:
    """A moto_server that checks signatures after its first request (the bucket's creation)."""
    server = MotoServer(free_port(), environment={"INITIAL_NO_AUTH_ACTION_COUNT": "1"}).start(tmp_path)
    try:
        server.create_bucket("strict")
        yield server
    finally:
        server.stop()


def test_misconfiguration_is_one_clear_line(moto: MotoServer, strict_moto: MotoServer) -> None:
    def problem(url: str, endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> str:
        with pytest.raises(StorageMisconfigured) as caught:
            Storage.s3(url, endpoint=endpoint, access_key_id=key, secret_access_key=secret).check()
        message = str(caught.value)
        assert "\n" not in message and secret not in message
        return message

    assert problem("s3://no-such-bucket/x", moto.endpoint).startswith("DATAPLANE_STORAGE_URL: bucket")
    assert problem("s3://strict/x", strict_moto.endpoint, "wrong", "wrong-secret").startswith(
        "DATAPLANE_S3_ACCESS_KEY_ID / DATAPLANE_S3_SECRET_ACCESS_KEY: credentials refused")
    started = time.monotonic()
    assert problem("s3://dataplane-test/x", f"http://127.0.0.1:{free_port()}").startswith(
        "DATAPLANE_S3_ENDPOINT_URL")
    assert time.monotonic() - started < 15  # bounded retries, never a hang
    Storage.s3("s3://dataplane-test/x", endpoint=moto.endpoint, access_key_id=ACCESS_KEY,
               secret_access_key=SECRET_KEY).check()


def test_an_unreachable_store_fails_fast_with_a_storage_error(tmp_path: Path) -> None:
    dead = Storage.s3("s3://b/p", endpoint=f"http://127.0.0.1:{free_port()}",
                      access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        dead.get_bytes("1/x.parquet")
    assert time.monotonic() - started < 10
    assert "127.0.0.1" not in str(caught.value) and "s3://" not in str(caught.value)  # said to users


def test_a_local_store_takes_a_moved_file_without_copying(tmp_path: Path) -> None:
    storage = Storage.local(tmp_path / "objects")
    source = tmp_path / "staged.parquet"
    source.write_bytes(b"rows")
    inode = source.stat().st_ino
    storage.put_file("5/a.parquet", source, move=True)
    placed = storage.local_path("5/a.parquet")
    assert placed is not None and placed.stat().st_ino == inode and not source.exists()
    source.write_bytes(b"other")
    with pytest.raises(ObjectExists):
        storage.put_file("5/a.parquet", source, move=True)
    assert placed.read_bytes() == b"rows" and source.exists()  # nothing taken on a refusal
