"""Noticing that the broker lost its queued messages, so they can be republished at once.

Redis without persistence forgets every queued message when it restarts (and a
FLUSHDB or an eviction does the same). We keep a marker key in the broker's own
database holding the server's `run_id` (from INFO) as of our last check:

- marker missing: the data set was lost (restart without persistence, flush), or this
  is the first start; either way, messages owed to pending jobs may be gone;
- marker present but another run_id: the server restarted; with AOF `everysec` the
  last second of messages may be gone.

Both mean "republish every pending job"; duplicates are harmless (the claim is a
compare-and-set). The marker lives with the data, so the check survives scheduler
restarts, and it is written only after the republish was recorded in the store.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)

MARKER_KEY = "dataplane.dispatcher.broker_run_id"


class BrokerWatch(Protocol):
    def lost_messages(self) -> bool:
        """True when queued messages may have been lost since the last acknowledge()."""

    def acknowledge(self) -> None:
        """The loss was handled (every pending job is owed a message again)."""


class RedisBrokerWatch:
    def __init__(self, url: str, *, timeout: float, min_interval: float) -> None:
        self._url = url
        self._timeout = timeout
        self._min_interval = min_interval
        self._next_check = 0.0
        self._run_id: str | None = None
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self._url, socket_connect_timeout=self._timeout, socket_timeout=self._timeout)
        return self._client

    def lost_messages(self) -> bool:
        if time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self._min_interval
        try:
            client = self._redis()
            marker = client.get(MARKER_KEY)
            self._run_id = str(client.info("server")["run_id"])
        except Exception as error:  # an unreachable broker fails the publish anyway
            log.debug("broker watch: %s", error)
            self._client = None
            return False
        return marker is None or marker.decode() != self._run_id

    def acknowledge(self) -> None:
        if self._run_id is None:
            return
        try:
            self._redis().set(MARKER_KEY, self._run_id)
        except Exception as error:  # checked again next time; costs one more republish
            log.debug("broker watch: %s", error)
            self._client = None
        self._next_check = 0.0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
