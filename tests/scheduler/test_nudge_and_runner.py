"""Nudges (Unix datagram and real Redis pub/sub) and the duty loop they wake."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from scheduler.runner import Runner
from shared.config import Settings
from shared.nudge import NudgeListener, nudge_dispatcher


@pytest.fixture(params=["embedded", "redis"])
def nudge_settings(request: pytest.FixtureRequest, data_dir: Path) -> Settings:
    if request.param == "redis":
        return Settings(data_dir=data_dir, broker_url=request.getfixturevalue("redis_url"))
    return Settings(data_dir=data_dir)


def test_nudge_wakes_the_listener_within_milliseconds(nudge_settings: Settings) -> None:
    with NudgeListener(nudge_settings) as listener:
        assert listener.wait(0.2) is False
        sent_at = time.monotonic()
        threading.Timer(0.05, nudge_dispatcher, args=(nudge_settings,)).start()
        assert listener.wait(5) is True
        assert time.monotonic() - sent_at < 0.5
        # A burst is answered by one wake-up, not one per nudge.
        for _ in range(100):
            nudge_dispatcher(nudge_settings)
        time.sleep(0.2)
        assert listener.wait(1) is True
        assert listener.wait(0.2) is False


def test_listeners_of_other_deployments_are_not_woken(tmp_path: Path) -> None:
    ours, theirs = (Settings(data_dir=tmp_path / name) for name in ("ours", "theirs"))
    with NudgeListener(ours) as listener:
        nudge_dispatcher(theirs)
        assert listener.wait(0.3) is False


@pytest.mark.parametrize("broker_url", ["", "redis://127.0.0.1:1/0"])
def test_nudge_without_a_listener_or_broker_neither_raises_nor_blocks(
        data_dir: Path, broker_url: str) -> None:
    settings = Settings(data_dir=data_dir, broker_url=broker_url)
    nudge_dispatcher(settings)  # the first call may start the sender thread
    started = time.monotonic()
    for _ in range(100):
        nudge_dispatcher(settings)
    assert (time.monotonic() - started) / 100 < 0.005


def test_listener_on_a_dead_broker_degrades_to_a_timer(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, broker_url="redis://127.0.0.1:1/0")
    with NudgeListener(settings) as listener:
        started = time.monotonic()
        assert listener.wait(0.3) is False
        assert listener.wait(0.3) is False
        assert 0.3 <= time.monotonic() - started < 3


class CountingDuty:
    def __init__(self, name: str, interval: float, on_nudge: bool, fail: bool = False) -> None:
        self.name, self.interval, self.on_nudge, self.fail = name, interval, on_nudge, fail
        self.runs: list[float] = []

    def run(self) -> None:
        self.runs.append(time.monotonic())
        if self.fail:
            raise RuntimeError("store down (test)")


def test_runner_runs_duties_on_their_interval_and_on_nudges(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    dispatch = CountingDuty("dispatch", interval=60, on_nudge=True)
    reap = CountingDuty("reap", interval=0.2, on_nudge=False)
    broken = CountingDuty("broken", interval=0.2, on_nudge=False, fail=True)
    with NudgeListener(settings) as listener:
        runner = Runner([dispatch, reap, broken], listener)
        thread = threading.Thread(target=runner.run_forever)
        thread.start()
        try:
            time.sleep(0.5)
            assert len(dispatch.runs) == 1          # at start; its timer is a minute
            nudged_at = time.monotonic()
            nudge_dispatcher(settings)
            deadline = time.monotonic() + 2
            while len(dispatch.runs) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(dispatch.runs) == 2 and dispatch.runs[1] - nudged_at < 0.3
            assert len(reap.runs) >= 3              # the timer alone, never nudged
            assert len(broken.runs) >= 3            # a failing duty keeps its turns
        finally:
            runner.stop()
            thread.join(timeout=5)
    assert not thread.is_alive()
