"""Putting task messages on the broker's queues, as a second step after the job-state script.

The broker's keys are kombu's (the list named after the queue, `unacked`, `unacked_index`): their
names cannot carry our hash tag, and kombu needs its Redis to be one server (a primary, or one that
Sentinel manages), never a cluster. So no job-state script writes them; a script records the change
and the task message on the record, and lists the record in `dispatch`; then the caller pushes the
task on the broker and takes the record off `dispatch`:

    1. job-state script: the job is `queued`, its task kept on it, its key in `dispatch`
    2. broker: the task pushed onto its queue's list (`push_task`, or `requeue_task` for a lost run)
    3. job state: `ZREM dispatch <key>`

When the broker is the job-state Redis itself (one server or a Sentinel's primary, the default), a new
task's steps 2 and 3 are one script (`scripts.SAME_SERVER_SCRIPTS`): a submission is two round trips.

A process that dies between 1 and 2 leaves the job queued with its task nowhere but on the record:
`redispatch` (run with every reaper scan, `operations.reap_op`) finds records listed in `dispatch`
for longer than `GRACE_S`, and for each one still waiting (a job `queued`, a composition `queued`)
makes sure its task is on its queue: taken out of kombu's unacknowledged messages and pushed unless
the list holds it already. One that dies between 2 and 3 makes `redispatch` look at a job whose task
is there: nothing is pushed. The rare duplicate that is left (a worker took the task off the list in
the instant before the check) is delivered twice, and the second delivery is refused by the claim
(the job is running with a live lease, or finished): the at-least-once contract the workers already
keep. A job is never lost between the steps, and a client is told its job was created only after
step 2.
"""

import json
import time

from jobstate.redis_keys import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, dispatch_key, shard_of_key
from jobstate.steps import Flow, Op, raw, text

# How long a record may be listed in `dispatch` before the reaper pushes its task itself: the steps
# above take milliseconds; a longer grace only delays the recovery after a crash.
GRACE_S = 30.0


def delivery_tag(task: str) -> str:
    """The delivery tag kombu knows the message by, '' when it has none."""
    try:
        tag = json.loads(task)["properties"]["delivery_tag"]
    except (ValueError, KeyError, TypeError):
        return ""
    return tag if isinstance(tag, str) else ""


def push_new(record_key: str, queue: str, task: str) -> Flow[None]:
    """Steps 2 and 3 for a new task: onto the tail of its queue, as kombu's producers push; one round
    trip when the broker is the job-state Redis (`Op.undispatch`), two when it is another."""
    yield Op(raw, script="push_task", keys=(queue,), args=(task,), broker=True, undispatch=record_key)


def requeue(record_key: str, queue: str, task: str) -> Flow[None]:
    """Steps 2 and 3 for a task that was queued before (a lost run, a recovered dispatch): to be next."""
    keys = (queue, KOMBU_UNACKED, KOMBU_UNACKED_INDEX)
    yield Op(raw, script="requeue_task", keys=keys, args=(task, delivery_tag(task)), broker=True)
    yield Op(raw, command=("ZREM", undispatch_key(record_key), record_key))


def drop_unacked(task: str) -> Flow[None]:
    """Take a task's delivery out of kombu's unacknowledged messages (its job ended while its worker
    was lost), so that the visibility timeout does not deliver it again (it would be refused)."""
    tag = delivery_tag(task)
    if tag:
        yield Op(raw, script="drop_unacked", keys=(KOMBU_UNACKED, KOMBU_UNACKED_INDEX), args=(tag,), broker=True)


def undispatch_key(record_key: str) -> str:
    """The `dispatch` that lists a record: its shard's."""
    return dispatch_key(shard_of_key(record_key))


def redispatch(shard: int, now: float | None = None, grace_s: float = GRACE_S) -> Flow[int]:
    """Push the task of every record listed in the shard's `dispatch` for longer than `grace_s` that
    still waits for it (see above); returns how many it looked at."""
    t = time.time() if now is None else now
    listed = dispatch_key(shard)
    members = yield Op(raw, command=("ZRANGEBYSCORE", listed, "-inf", repr(t - grace_s), "LIMIT", 0, 100))
    for member in members or []:
        key = text(member)
        fields = yield Op(raw, script="dispatch_check", keys=(key, listed))
        if fields:
            yield from requeue(key, text(fields[1]), text(fields[0]))
    return len(members or [])


__all__ = ["GRACE_S", "delivery_tag", "drop_unacked", "push_new", "redispatch", "requeue", "undispatch_key"]
