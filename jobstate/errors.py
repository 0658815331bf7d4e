"""Why a job-state operation refused a request; the service maps each to an HTTP problem."""


class TooManyActiveJobs(Exception):
    """The tenant already has as many queued and running jobs as it may."""

    def __init__(self, active: int, cap: int) -> None:
        super().__init__(f"the tenant has {active} queued or running jobs, the most it may have is {cap}")
        self.active = active
        self.cap = cap


class IdempotencyConflict(Exception):
    """The idempotency key was used before with another body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the Idempotency-Key was used for job {job_id} with a different body")
        self.job_id = job_id


class RateLimited(Exception):
    """The bucket had no token for this request."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s
