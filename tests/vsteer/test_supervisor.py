"""The supervisor of `vsteer up` on trivial real child processes: restarts, backoff, stop."""

import logging
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vsteer.supervisor import Backoff, Child, Supervisor


def child(tmp_path: Path, code: str, name: str = "crasher") -> Child:
    return Child(name, [sys.executable, "-c", code], {}, tmp_path / f"{name}.log")


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_backoff_doubles_to_its_cap_and_resets_after_a_long_run():
    backoff = Backoff(first_s=1, cap_s=30, reset_after_s=60)
    delays = [None]
    for _ in range(7):
        delays.append(backoff.delay(delays[-1], uptime_s=2))
    assert delays[1:] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(30, uptime_s=60) == 1


def test_backoff_refuses_a_cap_below_the_first_wait():
    with pytest.raises(ValueError, match="cap_s must be >= first_s = 2"):
        Backoff(first_s=2, cap_s=1)


def test_a_crashing_child_is_retried_with_doubling_waits_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vsteer.supervisor")
    crasher = child(tmp_path, "import sys; print('run'); sys.exit(3)")
    crasher.start()
    supervisor = Supervisor([crasher], Backoff(first_s=0.1, cap_s=0.4, reset_after_s=60), poll_s=0.02)
    supervisor.start()
    try:
        wait_until(lambda: len(crasher.exits) >= 5)
    finally:
        supervisor.stop()

    assert [e.returncode for e in crasher.exits[:5]] == [3] * 5
    assert [e.delay_s for e in crasher.exits[:5]] == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert crasher.restarts >= 4
    # The uptime depends on how fast the interpreter starts on a loaded machine; the rest is exact.
    log = re.escape(str(crasher.log))
    first_exit = rf"crasher exited with code 3 after \d+\.\d s up; starting it again in 0\.1 s \(log: {log}\)"
    assert re.search(first_exit, caplog.text), caplog.text
    assert "crasher started again, pid" in caplog.text
    # One log across runs, each restart marked.
    text = crasher.log.read_text()
    assert text.count("run\n") == crasher.restarts + 1
    assert "--- vsteer: crasher exited with code 3; started again ---" in text


def test_a_child_that_stayed_up_restarts_after_the_first_wait(tmp_path):
    slow = child(tmp_path, "import sys, time; time.sleep(0.3); sys.exit(1)")
    slow.start()
    supervisor = Supervisor([slow], Backoff(first_s=0.05, cap_s=5, reset_after_s=0.2), poll_s=0.02)
    supervisor.start()
    try:
        wait_until(lambda: len(slow.exits) >= 3)
    finally:
        supervisor.stop()
    assert [e.delay_s for e in slow.exits[:3]] == [0.05] * 3
    assert all(e.uptime_s >= 0.2 for e in slow.exits[:3])


def test_a_killed_child_is_named_by_its_signal_and_the_others_stay_up(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vsteer.supervisor")
    sleeper = child(tmp_path, "import time; time.sleep(60)", "sleeper")
    steady = child(tmp_path, "import time; time.sleep(60)", "steady")
    for c in (sleeper, steady):
        c.start()
    first_pid, steady_pid = sleeper.pid, steady.pid
    supervisor = Supervisor([steady, sleeper], Backoff(first_s=0.05), poll_s=0.02)
    supervisor.start()
    try:
        sleeper.proc.send_signal(signal.SIGKILL)
        wait_until(lambda: sleeper.restarts == 1 and sleeper.alive())
        assert sleeper.pid != first_pid
        assert steady.alive() and steady.pid == steady_pid
        assert "sleeper killed by signal SIGKILL" in caplog.text
    finally:
        supervisor.stop()
        for c in (sleeper, steady):
            c.stop(5)
    assert not sleeper.alive() and not steady.alive()


def test_nothing_is_started_again_after_stop(tmp_path):
    crasher = child(tmp_path, "import sys; sys.exit(2)")
    crasher.start()
    supervisor = Supervisor([crasher], Backoff(first_s=0.05), poll_s=0.02)
    supervisor.start()
    wait_until(lambda: crasher.restarts >= 1)
    supervisor.stop()
    assert not supervisor.running()
    restarts = crasher.restarts
    time.sleep(0.3)
    assert crasher.restarts == restarts


def test_a_child_that_cannot_start_is_retried_until_it_can(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vsteer.supervisor")
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    crasher = Child("crasher", [sys.executable, "-c", "import sys; sys.exit(1)"], {}, tmp_path / "c.log", cwd=workdir)
    crasher.start()
    workdir.rmdir()  # the next start fails: its working directory is gone
    supervisor = Supervisor([crasher], Backoff(first_s=0.05, cap_s=0.2), poll_s=0.02)
    supervisor.start()
    try:
        wait_until(lambda: [e.returncode for e in crasher.exits[:3]] == [1, None, None])
        assert crasher.restarts == 0
        assert "crasher could not be started" in caplog.text
        workdir.mkdir()
        wait_until(lambda: crasher.restarts >= 1)
    finally:
        supervisor.stop()
    assert [e.delay_s for e in crasher.exits[:3]] == [0.05, 0.1, 0.2]
