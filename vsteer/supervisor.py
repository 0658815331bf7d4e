"""Child processes that are started again when they die: what keeps `vsteer up` up.

A `Child` is a command, its environment and its log file. While a `Supervisor` watches them, a child
that exits is started again after a delay (`Backoff`): `first_s`, doubling on each exit up to `cap_s`,
and back to `first_s` once the child had stayed up `reset_after_s`. A child that keeps crashing is
retried at the cap for as long as the supervisor runs; nothing it does stops the others. Each exit is
logged (logger `vsteer.supervisor`, WARNING) with its exit code or signal and the child's log file,
and a line in that log file marks where the next run begins.

Stopping is the caller's: `Supervisor.stop()` ends the watching (no restart can start after it
returns), then the caller stops the children.
"""

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before starting a child that exited again."""

    first_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.first_s <= 0:
            raise ValueError(f"first_s must be > 0, got {self.first_s}")
        if self.cap_s < self.first_s:
            raise ValueError(f"cap_s must be >= first_s = {self.first_s}, got {self.cap_s}")
        if self.reset_after_s < 0:
            raise ValueError(f"reset_after_s must be >= 0, got {self.reset_after_s}")

    def delay(self, previous_s: float | None, uptime_s: float) -> float:
        """The wait before the next start, given the previous wait and how long the last run lasted."""
        if previous_s is None or uptime_s >= self.reset_after_s:
            return self.first_s
        return min(previous_s * 2, self.cap_s)


@dataclass(frozen=True)
class Exit:
    """One unexpected end of a child's run (returncode None: it did not start) and the wait after it."""

    returncode: int | None
    uptime_s: float
    delay_s: float

    def describe(self) -> str:
        if self.returncode is None:
            return "could not be started"
        if self.returncode < 0:
            try:
                return f"killed by signal {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exited with code {self.returncode}"


@dataclass
class Child:
    """One process of the stack: how to start it, its log file, and its runs so far."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    exits: list[Exit] = field(default_factory=list)

    def start(self) -> None:
        # The first run starts a fresh log; a restart appends to it, after a line saying why.
        with open(self.log, "ab" if self.exits else "wb") as out:
            if self.exits:
                out.write(f"\n--- vsteer: {self.name} {self.exits[-1].describe()}; started again ---\n".encode())
                out.flush()
            # A new session: Ctrl-C in the terminal reaches the parent only, which stops the children
            # in order instead of every one at once.
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float) -> None:
        if self.proc is None or not self.alive():
            return
        # SIGTERM: uvicorn and redis shut down; a Celery worker hands its job back (warm shutdown).
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)


class Supervisor:
    """Watches children from a background thread and starts again each one that exits."""

    def __init__(self, children: Sequence[Child], backoff: Backoff, poll_s: float = 0.2) -> None:
        self.children = children
        self.backoff = backoff
        self.poll_s = poll_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsteer-supervisor", daemon=True)
        self._due: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop watching; when this returns, no child is being or will be started again."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            for child in list(self.children):
                if self._stopping.is_set():
                    return
                try:
                    self._watch(child, time.monotonic())
                except Exception:
                    # The supervisor must outlive any one child's trouble.
                    log.exception("supervising %s failed; trying again", child.name)

    def _watch(self, child: Child, now: float) -> None:
        if child.alive():
            return
        due = self._due.get(child.name)
        if due is None:
            self._schedule(child, child.returncode, now)
        elif now >= due:
            del self._due[child.name]
            try:
                child.start()
            except OSError as exc:
                log.error("%s could not be started: %s (log: %s)", child.name, exc, child.log)
                child.started_at = now
                self._schedule(child, None, now)
                return
            child.restarts += 1
            log.info("%s started again, pid %s (restart %d)", child.name, child.pid, child.restarts)

    def _schedule(self, child: Child, returncode: int | None, now: float) -> None:
        previous = child.exits[-1].delay_s if child.exits else None
        uptime = now - child.started_at
        exit_ = Exit(returncode, uptime, self.backoff.delay(previous, uptime))
        child.exits.append(exit_)
        self._due[child.name] = now + exit_.delay_s
        log.warning(
            "%s %s after %.1f s up; starting it again in %g s (log: %s)",
            child.name,
            exit_.describe(),
            uptime,
            exit_.delay_s,
            child.log,
        )
