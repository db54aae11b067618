"""Object storage: where every data file lives, and the one module that names them.

`DATAPLANE_STORAGE_URL` is `file:///abs/path` (the default: `<data_dir>/datasets`) or
`s3://bucket/prefix` (any S3-compatible server with `DATAPLANE_S3_ENDPOINT_URL`). Both are
obstore stores behind the same few verbs, with object *keys* as the currency: a snapshot
lists keys, never host paths, so hosts share nothing but the bucket.

Keys (built only here):

    <dataset_id>/<job_id>-<attempt>-<n>.parquet     a run's output files
    <dataset_id>/<col>_<day|month|year>=<value>[/...]/<job_id>-<attempt>-<n>.parquet
                                                    a PARTITIONED_BY view's output files
    <dataset_id>/import-<token>.parquet             `dataplane datasets import`

Objects are immutable: written once with create-only puts (`If-None-Match: *`), deleted
when no snapshot lists them any more. Every call is bounded (connect and request
timeouts, a few retries within a deadline), and every failure surfaces as
`StorageError`, an infrastructure error: the worker retries the run, the API answers 503.
Messages never carry credentials; those reaching users carry no bucket or endpoint either.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import LocalStore, S3Store

from shared.config import Settings

if TYPE_CHECKING:
    from obstore.store import ClientConfig
from shared.errors import InfrastructureError

# Bounds on every call: a dead server costs at most a few seconds, never a hang.
CONNECT_TIMEOUT = "2s"
REQUEST_TIMEOUT = "8s"
RETRY_DEADLINE = timedelta(seconds=6)
MAX_RETRIES = 3
_DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1000 keys


class StorageError(InfrastructureError):
    """Object storage failed (unreachable, timed out, refused): retriable."""

    title = "Service Unavailable"


class ObjectNotFound(StorageError):
    """A key that should exist does not (a snapshot's file gone missing is our fault)."""


class ObjectExists(StorageError):
    """A create-only put found the key taken."""


class StorageMisconfigured(StorageError):
    """The bucket is missing or the credentials are refused: fix the settings."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


# -- keys ---------------------------------------------------------------------------------

def dataset_prefix(dataset_id: int) -> str:
    return f"{int(dataset_id)}/"


def output_key(dataset_id: int, job_id: uuid.UUID, attempt: int, index: int) -> str:
    """A run's n-th output file: unique to the job and the attempt."""
    return f"{int(dataset_id)}/{job_id}-{int(attempt)}-{int(index)}.parquet"


def partitioned_output_key(dataset_id: int, partition: Iterable[tuple[str, str]], job_id: uuid.UUID,
                           attempt: int, index: int) -> str:
    """A PARTITIONED_BY view's output file, under Hive-style `name=value` folders."""
    folders = "/".join(f"{_segment(name)}={_segment(value)}" for name, value in partition)
    return f"{int(dataset_id)}/{folders}/{job_id}-{int(attempt)}-{int(index)}.parquet"


def partition_of_key(key: str) -> dict[str, str]:
    """The `name=value` folders of a key (empty for an unpartitioned file)."""
    return dict(part.split("=", 1) for part in key.split("/")[1:-1] if "=" in part)


def _segment(text: str) -> str:
    # Partition values are dates we formatted, names are column names: keep keys plain.
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "_"


def import_key(dataset_id: int, token: str) -> str:
    return f"{int(dataset_id)}/import-{token}.parquet"


def dataset_of_key(key: str) -> int | None:
    head = key.split("/", 1)[0]
    return int(head) if head.isdigit() else None


def check_key(key: str) -> str:
    """Keys are ours, but a key is also a local path under the cache: no escapes."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


# -- errors -------------------------------------------------------------------------------

def _storage_error(error: BaseException, action: str, key: str | None = None) -> StorageError:
    """Our exception for an obstore one, with a message safe to show a user (obstore's own
    text names the endpoint and the bucket)."""
    what = f"{action} {key}" if key else action
    if isinstance(error, NotFoundError | FileNotFoundError):
        return ObjectNotFound(f"object storage: {key or action}: no such object")
    if isinstance(error, AlreadyExistsError | PreconditionError | FileExistsError):
        return ObjectExists(f"object storage: {what}: the object already exists")
    if isinstance(error, PermissionDeniedError | UnauthenticatedError):
        return StorageMisconfigured(f"object storage: {what}: access denied")
    return StorageError(f"object storage unavailable ({what} failed: {type(error).__name__})")


class _Guard:
    """`with _Guard("get", key):` turns obstore errors into StorageError."""

    def __init__(self, action: str, key: str | None = None) -> None:
        self.action, self.key = action, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _tb: object) -> None:
        if error is not None and isinstance(error, BaseError | OSError) \
                and not isinstance(error, StorageError):
            raise _storage_error(error, self.action, self.key) from error


# -- the store ----------------------------------------------------------------------------

class Storage:
    """A bucket (or folder) of immutable objects addressed by key."""

    def __init__(self, store: Any, *, description: str, root: Path | None = None) -> None:
        self._store = store
        self.description = description  # for logs and operator messages, never for users
        self._root = root  # set for file:// stores: objects are plain files there

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        url = settings.storage_url or settings.datasets_dir.as_uri()
        scheme = urlsplit(url).scheme
        if scheme == "file":
            return cls.local(Path(urlsplit(url).path))
        if scheme == "s3":
            return cls.s3(url, endpoint=settings.s3_endpoint_url, region=settings.s3_region,
                          access_key_id=settings.s3_access_key_id,
                          secret_access_key=(settings.s3_secret_access_key.get_secret_value()
                                             if settings.s3_secret_access_key else None))
        raise ValueError(f"DATAPLANE_STORAGE_URL: unsupported scheme {scheme!r} "
                         "(expected file:///abs/path or s3://bucket/prefix)")

    @classmethod
    def local(cls, root: Path) -> Storage:
        root = root.expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(LocalStore(root), description=root.as_uri(), root=root)

    @classmethod
    def s3(cls, url: str, *, endpoint: str | None = None, region: str = "us-east-1",
           access_key_id: str | None = None, secret_access_key: str | None = None) -> Storage:
        """`s3://bucket/prefix`. Without keys, obstore's standard AWS chain applies
        (AWS_ACCESS_KEY_ID..., profile-less: environment, web identity, instance metadata)."""
        parts = urlsplit(url)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if not bucket:
            raise ValueError("DATAPLANE_STORAGE_URL: an s3:// URL needs a bucket")
        config: dict[str, Any] = {"region": region}
        if access_key_id and secret_access_key:
            config.update(access_key_id=access_key_id, secret_access_key=secret_access_key)
        client: ClientConfig = {"connect_timeout": CONNECT_TIMEOUT, "timeout": REQUEST_TIMEOUT}
        if endpoint:
            config.update(endpoint=endpoint, virtual_hosted_style_request=False)
            client["allow_http"] = endpoint.startswith("http://")
        store = S3Store(
            bucket, prefix=prefix or None, client_options=client,
            retry_config={"max_retries": MAX_RETRIES, "retry_timeout": RETRY_DEADLINE,
                          "backoff": {"init_backoff": timedelta(milliseconds=100),
                                      "max_backoff": timedelta(seconds=2), "base": 2}},
            **config)
        where = f"s3://{bucket}/{prefix}" + (f" at {endpoint}" if endpoint else "")
        return cls(store, description=where)

    # -- reading --------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self._root is not None

    def local_path(self, key: str) -> Path | None:
        """The file itself, for a file:// store (read in place, no copy)."""
        return self._root / check_key(key) if self._root is not None else None

    def size(self, key: str) -> int:
        with _Guard("head", key):
            return int(obstore.head(self._store, check_key(key))["size"])

    def get_bytes(self, key: str) -> bytes:
        with _Guard("get", key):
            return bytes(obstore.get(self._store, check_key(key)).bytes())

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with _Guard("get", key):
            return bytes(obstore.get_range(self._store, check_key(key), start=start, length=length))

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The object's bytes, streamed."""
        with _Guard("get", key):
            result = obstore.get(self._store, check_key(key))
            for chunk in result.stream(min_chunk_size=chunk_size):
                yield bytes(chunk)

    def open(self, key: str) -> RangedFile:
        """A seekable read-only file doing ranged GETs (what pyarrow needs for Parquet)."""
        local = self.local_path(key)
        return RangedFile(self, key, local.stat().st_size if local else self.size(key))

    def download(self, key: str, destination: Path) -> int:
        """Write the object to `destination` atomically (a temp name, then rename), so a
        reader never sees half a file and two processes fetching it at once is harmless."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
        try:
            size = 0
            with temporary.open("wb") as out:
                for chunk in self.iter_bytes(key, chunk_size=8 << 20):
                    out.write(chunk)
                    size += len(chunk)
            os.replace(temporary, destination)
            return size
        finally:
            temporary.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with _Guard("list", prefix or "/"):
            for batch in obstore.list(self._store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    yield ObjectInfo(key=str(meta["path"]), size=int(meta["size"]),
                                     last_modified=meta["last_modified"])

    # -- writing --------------------------------------------------------------------------
    def put_file(self, key: str, source: Path, *, move: bool = False) -> int:
        """Upload `source` under `key`, create-only; returns its size. `move`: the caller is
        done with `source`, and a local store may take the file itself instead of a copy
        (a link then an unlink: still create-only, and no byte copied)."""
        size = source.stat().st_size
        local = self.local_path(key)
        if local is not None and move:
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, local)
            except FileExistsError as error:
                raise ObjectExists(f"object storage: put {key}: the object already exists") from error
            except OSError:
                pass  # another file system: copy through the store
            else:
                source.unlink()
                return size
        with _Guard("put", key):
            obstore.put(self._store, check_key(key), source, mode="create")
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        with _Guard("put", key):
            obstore.put(self._store, check_key(key), data, mode="create")

    def delete(self, keys: Iterable[str]) -> None:
        """Delete what exists of `keys` (missing ones are fine)."""
        batch = [check_key(k) for k in keys]
        if self._root is not None:
            for key in batch:
                (self._root / key).unlink(missing_ok=True)
            return
        for start in range(0, len(batch), _DELETE_BATCH):  # S3 ignores missing keys
            chunk = batch[start:start + _DELETE_BATCH]
            with _Guard("delete", chunk[0]):
                obstore.delete(self._store, chunk)

    # -- operations -------------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast at process start: the bucket exists and the credentials work.
        Raises StorageMisconfigured / StorageError with one line naming the setting."""
        try:
            next(iter(obstore.list(self._store, chunk_size=1)), None)
        except NotFoundError as error:
            raise StorageMisconfigured(
                f"DATAPLANE_STORAGE_URL: bucket or path not found ({self.description})") from error
        except (PermissionDeniedError, UnauthenticatedError) as error:
            raise StorageMisconfigured(
                "DATAPLANE_S3_ACCESS_KEY_ID / DATAPLANE_S3_SECRET_ACCESS_KEY: credentials refused "
                f"by {self.description}") from error
        except BaseError as error:
            text = str(error)
            if "NoSuchBucket" in text or "404" in text:
                raise StorageMisconfigured(
                    f"DATAPLANE_STORAGE_URL: bucket not found ({self.description})") from error
            if any(code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "403")):
                raise StorageMisconfigured(
                    "DATAPLANE_S3_ACCESS_KEY_ID / DATAPLANE_S3_SECRET_ACCESS_KEY: credentials "
                    f"refused by {self.description}") from error
            raise StorageMisconfigured(
                f"DATAPLANE_S3_ENDPOINT_URL / DATAPLANE_STORAGE_URL: cannot reach {self.description} "
                f"({type(error).__name__})") from error


class RangedFile(io.RawIOBase):
    """Read-only, seekable view of one object: each read is one ranged GET (or a local
    pread). pyarrow reads a Parquet footer, then only the column chunks it needs."""

    def __init__(self, storage: Storage, key: str, size: int) -> None:
        super().__init__()
        self._storage, self._key, self._size, self._pos = storage, key, size, 0
        local = storage.local_path(key)
        self._local = local.open("rb") if local is not None else None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), self._size - self._pos)
        if length <= 0:
            return 0
        if self._local is not None:
            self._local.seek(self._pos)
            read = self._local.readinto(view[:length]) or 0
        else:
            data = self._storage.read_range(self._key, self._pos, length)
            read = len(data)
            view[:read] = data
        self._pos += read
        return read

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        super().close()
