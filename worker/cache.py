"""A worker host's cache of input objects, so DuckDB only ever reads local files.

Snapshot objects are immutable, so a cached copy keyed by object key is always right.
`<cache_dir>/objects/<key>`; downloads go to a temporary name and are renamed into place,
so two pool processes fetching the same object at once is harmless (the second rename
replaces identical bytes). The cache is a folder: it survives restarts.

Pinning is a hard link: a run links each input into its own staging folder (`in/`) and
DuckDB reads the links. A cached file whose link count is above one is in use by some
run (of any process on the host), and eviction skips it; when the run's staging folder
is removed, the pin goes with it. Even if eviction races a new pin, the run keeps its
link to the same inode, so a file is never pulled from under a query.

Eviction is least-recently-used by modification time (touched on every pin), down to
`cache_max_bytes`, under an exclusive `flock` so one process evicts at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.storage import Storage, check_key

log = logging.getLogger(__name__)


class InputCache:
    def __init__(self, root: Path, storage: Storage, *, max_bytes: int) -> None:
        self.root = root
        self.objects = root / "objects"
        self.storage = storage
        self.max_bytes = max_bytes
        self.objects.mkdir(parents=True, exist_ok=True)
        self.fetched_bytes = 0  # downloads by this process (for statistics)

    def path_of(self, key: str) -> Path:
        return self.objects / check_key(key)

    def pin(self, keys: Sequence[str], into: Path) -> list[Path]:
        """Each object as a local file linked under `into` (fetched first if missing)."""
        into.mkdir(parents=True, exist_ok=True)
        pinned: list[Path] = []
        fetched = 0
        for index, key in enumerate(keys):
            link = into / f"{index}.parquet"
            fetched += self._link(key, link)
            pinned.append(link)
        if fetched:
            self.fetched_bytes += fetched
            self.evict()
        return pinned

    def _link(self, key: str, link: Path) -> int:
        cached = self.path_of(key)
        for _ in range(3):
            try:
                os.link(cached, link)
                with contextlib.suppress(OSError):
                    os.utime(cached)  # most recently used
                return 0
            except FileNotFoundError:
                size = self.storage.download(key, cached)
                with contextlib.suppress(FileNotFoundError):
                    os.link(cached, link)
                    return size
        raise FileNotFoundError(f"could not pin {key} in the cache")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def evict(self) -> int:
        """Delete unpinned files, least recently used first, until under the bound."""
        with self._locked():
            entries = []
            total = 0
            for path in self.objects.rglob("*"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if not path.is_file():
                    continue
                if path.name.startswith(".") and stat.st_mtime < time.time() - 3600:
                    path.unlink(missing_ok=True)  # a download killed half way
                    continue
                total += stat.st_size
                entries.append((stat.st_mtime, stat.st_size, stat.st_nlink, path))
            freed = 0
            for _, size, links, path in sorted(entries):
                if total - freed <= self.max_bytes:
                    break
                if links > 1:
                    continue  # pinned by a running job
                path.unlink(missing_ok=True)
                freed += size
            if freed:
                log.info("cache: evicted %d bytes (%d bytes cached, bound %d)",
                         freed, total - freed, self.max_bytes)
            return freed


@dataclass(frozen=True)
class DataFiles:
    """Where a worker process reads and writes data files: the store, and for a remote
    store the host's input cache (None for a file:// store, whose files are read in place)."""

    storage: Storage
    cache: InputCache | None

    @classmethod
    def from_settings(cls, settings: Settings) -> DataFiles:
        storage = Storage.from_settings(settings)
        cache = None if storage.is_local else InputCache(
            settings.cache_dir, storage, max_bytes=settings.cache_max_bytes)
        return cls(storage, cache)
