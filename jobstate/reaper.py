"""Taking back the jobs of lost workers: a dead worker's job runs again within a minute.

A worker holds the job it runs by a lease (`job:<id>:lease`) that its heartbeat renews every
`heartbeat_s`; a process that dies (SIGKILL, out of memory, a lost node) stops renewing it, and after
`worker_lost_after_s` the job has lost its worker. `reap_once`, run by the API every `reap_every_s`
(`service.reaper`), then puts each such job back on its queue: one Lua step (`jobstate.scripts`)
moves it `running → queued`, the lost run still counted toward the poison limit, and lists its task
in `dispatch`; the next step pushes the job's own task message onto its queue, taken out of the
broker's unacknowledged messages so that the visibility timeout does not deliver it again
(`jobstate.dispatch`: a reaper that dies between the two leaves it to the next scan). The step is
atomic and checks the job's status and lease, so any number of API processes may reap at once, and a
worker that was only slow (its lease expired while it still ran) is refused when it next reports: it
stops and writes nothing. A job whose runs
reached `max_deliveries` is failed instead, with the same problem a worker gives a poison job, and
one whose cancel was asked for (the worker died before it read the flag) is canceled.
"""

import logging

from api_schemas import Problem
from api_schemas.problems import ProblemType
from jobstate.operations import Reaped
from jobstate.records import JobRecord
from jobstate.store import AsyncJobStore

log = logging.getLogger(__name__)


def worker_lost_problem(job_id: str, attempts: int) -> Problem:
    """The problem details of a job failed because its runs kept losing their worker (a poison job)."""
    detail = (
        f"the job was started {attempts} times and each time its worker process stopped before it "
        "finished (crashed, killed or out of host memory); it is not run again"
    )
    return Problem(
        type=ProblemType.worker_lost.uri,
        title="Job crashed its worker",
        status=500,
        detail=detail,
        instance=f"/v1/jobs/{job_id}",
    )


async def reap_once(store: AsyncJobStore, max_deliveries: int) -> tuple[list[Reaped], list[JobRecord]]:
    """One scan: every running job whose worker was lost is queued again, canceled (its cancel was
    asked for) or failed as a poison job.

    Returns what the scan found and the records of the jobs this call ended (for their webhooks).
    """
    found = await store.reap(max_deliveries)
    ended: list[JobRecord] = []
    for job in found:
        if job.outcome == "requeued":
            log.warning("job %s lost its worker %s (run %d); queued again", job.job_id, job.worker, job.attempts)
        elif job.outcome == "canceled":
            log.info("job %s lost its worker %s after its cancel was asked for; canceled", job.job_id, job.worker)
            record = await store.get_any(job.job_id)
            if record is not None:
                ended.append(record)
        elif job.outcome == "poison":
            problem = worker_lost_problem(job.job_id, job.attempts)
            transition = await store.fail_lost(job.job_id, problem, job.worker)
            if transition.applied and transition.record is not None:
                log.error("job %s lost its worker on each of %d runs; failed", job.job_id, job.attempts)
                ended.append(transition.record)
        else:
            log.debug("job %s lost its worker but has no kept task message; left to the broker", job.job_id)
    return found, ended


__all__ = ["reap_once", "worker_lost_problem"]
