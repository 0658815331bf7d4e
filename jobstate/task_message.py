"""A Celery task message as it lies in the broker: built here so that it can be kept on the job's
record by the script that records the job, and pushed onto the broker's list right after.

Keeping the task on the record in the same script means there is no moment at which a job exists but
its task is nowhere (an API process killed before the push leaves the task for the reaper to push,
`jobstate.dispatch`), and a submission costs Redis round trips, not a Celery publish in a thread.

The message is what `Celery.send_task(name, kwargs=..., queue=...)` writes through kombu's Redis
transport: task protocol 2 (headers + a JSON body `[args, kwargs, embed]`) in kombu's envelope, the
body base64-encoded, delivered with priority 0 to the list named after the queue. The task is still
addressed by *name*: nothing here imports the workers. `tests/jobstate/test_task_message.py` checks
the message field for field against one kombu writes, and the integration suites run it through a
real Celery worker.
"""

import base64
import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class TaskMessage:
    """Where the message goes (the Redis list of the queue) and its bytes."""

    list_key: str
    payload: str


def task_message(name: str, kwargs: Mapping[str, Any], queue: str, task_id: str | None = None) -> TaskMessage:
    """The message of task `name` called with `kwargs` on `queue`; `task_id` defaults to a new UUID."""
    task_id = task_id or str(uuid.uuid4())
    body = json.dumps([[], dict(kwargs), _EMBED])
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": repr(dict(kwargs)),
        "origin": _ORIGIN,
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": task_id,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    # kombu's Redis transport keeps priority-0 messages in the list named exactly after the queue.
    return TaskMessage(list_key=queue, payload=json.dumps(envelope))


__all__ = ["TaskMessage", "task_message"]
