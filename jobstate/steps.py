"""What the stores run: an `Op` (one round trip to Redis, a script or one command, and how to read its
reply) or a `Flow` (a generator of `Op`s, each sent the decoded reply of the one before, returning
the operation's result).

A flow is for an operation that needs two round trips or two Redis servers: a state change whose
keys are named after a field of the record (read first, `operations.job_keys`), or one that writes
to job state and then to the broker (`jobstate.dispatch`). Both stores, sync and async, run the same
flows; an exception of a step is thrown into the flow, which may undo what it did before re-raising.
"""

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Op(Generic[T]):
    """One round trip: a script (by name in `jobstate.scripts.SCRIPTS`, or `BROKER_SCRIPTS` with
    `broker`) or one command, and how to read its reply. `broker`: run it on the Celery broker's Redis
    (the job-state Redis unless they are apart, as with Redis Cluster)."""

    decode: Callable[[Any], T]
    script: str | None = None
    keys: Sequence[str] = ()
    args: Sequence[Any] = ()
    command: Sequence[Any] = ()
    broker: bool = False
    undispatch: str | None = None
    """A broker script's job record to take off `dispatch` once it ran (`jobstate.dispatch`): in the
    same script when the broker is the job-state Redis (`SAME_SERVER_SCRIPTS`), else a second command."""


Flow = Generator[Op[Any], Any, T]


def raw(value: Any) -> Any:
    """The decoder of a step whose reply the flow reads itself."""
    return value


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["Flow", "Op", "raw", "text"]
