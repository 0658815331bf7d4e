"""Errors a job can end with, each carrying what the problem+json of the job resource needs."""


class JobInputError(Exception):
    """Bad input found while running (an unreadable image, a missing asset): the job fails, the worker lives.

    `field` is the path of the offending field in the job document, e.g. ``keyframes[1].image``.
    """

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


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
