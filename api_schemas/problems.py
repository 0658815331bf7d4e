"""The kinds of problem vsteer reports, named once for the service and the workers.

A problem's `type` is `PROBLEM_BASE + kind`; clients branch on it (and on `status`), so these names
are part of the contract: add to them, never rename one.
"""

from enum import StrEnum

PROBLEM_BASE = "https://vsteer.dev/problems/"


class ProblemType(StrEnum):
    """Every problem `type` vsteer sends, by kind (the part after `PROBLEM_BASE`)."""

    # The HTTP edge.
    validation = "validation"
    not_found = "not-found"
    conflict = "conflict"
    unauthorized = "unauthorized"
    too_large = "too-large"
    unsupported_media = "unsupported-media"
    rate_limited = "rate-limited"
    too_many_active_jobs = "too-many-active-jobs"
    unavailable = "unavailable"
    # A job that failed on its worker.
    invalid_input = "invalid-input"
    video_unreadable = "video-unreadable"
    out_of_memory = "out-of-memory"
    model_unavailable = "model-unavailable"
    storage_unavailable = "storage-unavailable"
    worker_lost = "worker-lost"
    time_limit = "time-limit"
    internal_error = "internal-error"

    @property
    def uri(self) -> str:
        """The problem's `type` URI."""
        return PROBLEM_BASE + self.value
