"""Errors a job can end with, and the problem details (RFC 9457) a failed job carries for each."""

from collections.abc import Mapping
from typing import Any

from api_schemas import Problem
from api_schemas.problems import ProblemType
from jobstate.reaper import worker_lost_problem


class JobInputError(Exception):
    """Bad input found while running (an unreadable image, a missing asset): the job fails, the worker lives.

    `field` is the path of the offending field in the job document, e.g. ``keyframes[1].image``.
    """

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class VideoUnreadable(JobInputError):
    """The job's video cannot be used (no video stream, undecodable data, too short, sizes outside the
    limits): the job fails with problem type `video-unreadable`, naming `video.source`."""


class JobTooLarge(JobInputError):
    """The job is valid but needs more memory than this worker has (`workers.memory_plan`): it fails
    before its GPU work, naming what to lower, instead of growing until the worker is killed."""


class ModelUnavailableError(Exception):
    """The model is not registered, or its weights are not where the registry says."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail


class JobCanceled(Exception):
    """The job's cancel flag was seen by the step callback; the job stopped within one step."""


class WorkerShuttingDown(Exception):
    """The worker was asked to stop (SIGTERM: a warm shutdown) while running a job; the step callback
    raises this so that the job goes back to the queue instead of holding the shutdown for its whole run."""


class JobTakenBack(Exception):
    """This worker's run no longer holds the job: its lease expired (the worker looked dead, stalled or
    cut off from Redis) and the reaper queued the job again. The run stops and writes nothing."""


class StorageUnavailable(Exception):
    """Storage stayed unreachable for the whole retry budget while results uploaded."""


class JobTimeLimitExceeded(Exception):
    """The job ran past the worker's time limit (`job_time_limit_s`); the step callback raises this so
    that the job fails, and the worker goes on, well before the broker's visibility timeout (set above
    the limit) would hand the job to a second worker."""

    def __init__(self, limit_s: float, elapsed_s: float) -> None:
        super().__init__(f"the job ran {elapsed_s:.1f} s, past the time limit of {limit_s:g} s")
        self.limit_s = limit_s
        self.elapsed_s = elapsed_s


# --- problem details: what a failed job carries, one builder per kind of failure -----------------


def job_problem(
    job_id: str, kind: ProblemType, title: str, status: int, detail: str, field: str | None = None
) -> Problem:
    """The problem details a failed job carries; `type` is the kind's URI."""
    return Problem(type=kind.uri, title=title, status=status, detail=detail, instance=f"/v1/jobs/{job_id}", field=field)


def input_problem(job_id: str, exc: JobInputError) -> Problem:
    detail = f"`{exc.field}`: {exc.detail}"
    if isinstance(exc, VideoUnreadable):
        return job_problem(job_id, ProblemType.video_unreadable, "Unreadable video", 422, detail, field=exc.field)
    return job_problem(job_id, ProblemType.invalid_input, "Invalid job input", 422, detail, field=exc.field)


def too_large_problem(job_id: str, exc: JobTooLarge) -> Problem:
    return job_problem(job_id, ProblemType.out_of_memory, "Not enough host memory", 507, exc.detail, field=exc.field)


def model_problem(job_id: str, exc: ModelUnavailableError) -> Problem:
    return job_problem(job_id, ProblemType.model_unavailable, "Model unavailable", 503, exc.detail, field="model")


def out_of_memory_problem(job_id: str, request: Mapping[str, Any], exc: BaseException) -> Problem:
    """The accelerator ran out of memory: say at what size, and what to lower (`request` as submitted)."""
    generation = request.get("generation") or {}
    size = f"{generation.get('width') or 'default'}x{generation.get('height') or 'default'}"
    frames = generation.get("num_frames") or "default"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = (
        f"the job ran out of accelerator memory at {size} with {frames} frames ({first_line}); "
        "lower `generation.width`/`height` or `num_frames`, or set `generation.decode_chunk_size`"
        + (" or a smaller `sweep.batch_size`" if request.get("sweep") else "")
    )
    return job_problem(job_id, ProblemType.out_of_memory, "Out of accelerator memory", 507, detail)


def poison_problem(job_id: str, attempts: int) -> Problem:
    return worker_lost_problem(job_id, attempts)


def storage_problem(job_id: str, exc: StorageUnavailable) -> Problem:
    return job_problem(job_id, ProblemType.storage_unavailable, "Storage unavailable", 503, str(exc)[:2000])


def time_limit_problem(job_id: str, exc: JobTimeLimitExceeded) -> Problem:
    """504: the job was stopped for taking too long (not for a fault of its own or of the worker)."""
    detail = (
        f"the job was still running after {exc.elapsed_s:.0f} s, past this worker's time limit of {exc.limit_s:g} s, "
        "and was stopped; lower `generation.steps`, `generation.num_frames`, `generation.width`/`height` "
        "or `sweep.count`"
    )
    return job_problem(job_id, ProblemType.time_limit, "Job time limit exceeded", 504, detail)


def internal_problem(job_id: str, exc: BaseException) -> Problem:
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    return job_problem(job_id, ProblemType.internal_error, "Job failed", 500, detail)
