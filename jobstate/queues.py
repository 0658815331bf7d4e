"""Celery task names and queues: the one place the service, the workers and the local stack read them.

Producers send tasks by name (the service never imports the workers), so a name or queue that differs
on the two sides would strand messages rather than fail; both import them from here. Names are
versioned: a change of arguments is a new name.
"""

RUN_JOB_TASK = "vsteer.run_job.v1"
DELIVER_WEBHOOK_TASK = "vsteer.deliver_webhook.v1"
COMPOSE_COMPARISON_TASK = "vsteer.compose_comparison.v1"

WEBHOOK_QUEUE = "webhooks"
# CPU work that needs no model (a comparison's side-by-side): served by the webhook worker's process.
CPU_QUEUE = "cpu"
GPU_QUEUE_PREFIX = "gpu."


def queue_for(model: str) -> str:
    """The queue of a model's jobs, `gpu.<model>`: each model has its own, so worker pools can specialise."""
    return f"{GPU_QUEUE_PREFIX}{model}"
