"""Nudges: "a job was just committed, publish it now" from the API to the dispatcher.

A nudge is only a hint that makes the dispatcher sweep early; losing one costs at
most `dispatch_interval_seconds` of latency, because the dispatcher also sweeps on
a timer. So the sending side is fire-and-forget and must never fail or stall a
request.

Two channels, chosen by the broker the deployment already has:
- Redis broker: pub/sub on a channel named after the Redis database, so processes on
  other hosts can nudge. Publishing goes through a background thread: a slow or dead
  Redis then costs the caller nothing (an `Event.set()`), and a burst of submissions
  coalesces into a few PUBLISHes.
- Embedded broker (no server at all): a Unix datagram socket named after the data
  dir (Linux abstract namespace, else a socket file in the data dir). `sendto` on a
  non-blocking datagram socket never waits; with no listener it fails at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

from shared.config import Settings

log = logging.getLogger(__name__)

_REDIS_TIMEOUT = 0.5  # seconds; only ever spent on the sender thread or the listener


def redis_channel(settings: Settings) -> str:
    """Pub/sub channels are global to a Redis server: scope ours by database number,
    so two deployments (or test sessions) on one server do not nudge each other."""
    import redis

    kwargs = redis.connection.parse_url(settings.celery_broker_url)
    return f"dataplane.nudge.{kwargs.get('db', 0)}"


def socket_address(settings: Settings) -> str:
    """The Unix datagram address the embedded-mode dispatcher listens on."""
    data_dir = str(settings.resolved_data_dir)
    if sys.platform.startswith("linux"):
        # Abstract namespace: no file to clean up, no 108-byte path limit.
        return "\0dataplane-nudge-" + hashlib.sha256(data_dir.encode()).hexdigest()[:24]
    return str(settings.resolved_data_dir / "dispatcher.sock")


# --- sending ------------------------------------------------------------------------


class _RedisSender:
    """A daemon thread that PUBLISHes once per batch of pokes."""

    def __init__(self, url: str, channel: str) -> None:
        self._url, self._channel = url, channel
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dataplane-nudge", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        import redis

        client: Any = None
        while True:
            self._wanted.wait()
            self._wanted.clear()  # pokes arriving during the PUBLISH cause one more
            try:
                if client is None:
                    client = redis.Redis.from_url(
                        self._url, socket_connect_timeout=_REDIS_TIMEOUT,
                        socket_timeout=_REDIS_TIMEOUT)
                client.publish(self._channel, b"1")
            except Exception as error:  # a nudge is a hint; the sweep catches up
                log.debug("nudge not sent: %s", error)
                client = None
                time.sleep(_REDIS_TIMEOUT)  # do not spin on a dead Redis


_senders: dict[tuple[int, str, str], _RedisSender] = {}
_senders_lock = threading.Lock()


def _redis_sender(settings: Settings) -> _RedisSender:
    # Keyed by pid: a thread started before a fork does not exist in the child.
    key = (os.getpid(), settings.celery_broker_url, redis_channel(settings))
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None:
            sender = _senders[key] = _RedisSender(key[1], key[2])
        return sender


def _send_datagram(settings: Settings) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(b"1", socket_address(settings))


def nudge_dispatcher(settings: Settings) -> None:
    """Ask the dispatcher to sweep now. Never raises, never waits on the network."""
    try:
        if settings.uses_redis:
            _redis_sender(settings).poke()
        else:
            _send_datagram(settings)
    except Exception as error:  # no dispatcher listening is normal
        log.debug("nudge not sent: %s", error)


# --- listening ----------------------------------------------------------------------


class NudgeListener:
    """What the dispatcher loop waits on: `wait(timeout)` returns True when nudged,
    False when the timeout passed. Channel failures degrade to a plain sleep (the
    loop then runs on its timer alone) and are retried on the next wait."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pubsub: Any = None
        self._sock: socket.socket | None = None
        self._broken_until = 0.0

    def __enter__(self) -> NudgeListener:
        self._connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            address = socket_address(self._settings)
            if not address.startswith("\0"):
                with contextlib.suppress(OSError):
                    os.unlink(address)

    def _connect(self) -> None:
        if time.monotonic() < self._broken_until:
            return
        try:
            if self._settings.uses_redis:
                self._connect_redis()
            else:
                self._bind_socket()
        except Exception as error:  # fall back to the timer
            log.warning("nudge listener unavailable (%s); sweeping on the timer only", error)
            self.close()
            self._broken_until = time.monotonic() + 5.0

    def _connect_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(
            self._settings.celery_broker_url, socket_connect_timeout=_REDIS_TIMEOUT,
            socket_timeout=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(redis_channel(self._settings))
        self._pubsub = pubsub

    def _bind_socket(self) -> None:
        address = socket_address(self._settings)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if not address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)  # a socket file left by a killed dispatcher
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock

    def wait(self, timeout: float) -> bool:
        timeout = max(0.0, timeout)
        if self._pubsub is None and self._sock is None:
            self._connect()
        if self._pubsub is not None:
            return self._wait_redis(timeout)
        if self._sock is not None:
            return self._wait_socket(self._sock, timeout)
        time.sleep(timeout)
        return False

    def _wait_redis(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        try:
            # get_message also returns None early for the (ignored) subscribe replies.
            while self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic())) is None:
                if time.monotonic() >= deadline:
                    return False
            while self._pubsub.get_message(timeout=0) is not None:
                pass  # drain: one sweep answers every nudge so far
            return True
        except Exception as error:  # Redis went away; the timer takes over
            log.warning("nudge listener lost Redis (%s); retrying later", error)
            self.close()
            self._broken_until = time.monotonic() + 2.0
            return False

    @staticmethod
    def _wait_socket(sock: socket.socket, timeout: float) -> bool:
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError):
            while sock.recv(64):
                pass
        return True
