"""The GPU worker's Celery app with the stand-in engine: `celery -A tests.reliability.standin_worker worker`.

Everything but the engine is the real worker: `workers.celery_app` settings and signals, the
`vsteer.run_job.v1` task, `workers.job_runner.execute`, job state in Redis and storage. The models
it "serves" are never loaded.
"""

from workers import celery_app
from workers.celery_app import app, build_deps, get_settings


class StandInRegistry:
    """Warms nothing; reports the served models as warm."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def warm(self, models: list[str]) -> None:
        self.names = list(models)

    def warm_names(self) -> list[str]:
        return self.names


def _standin_deps():  # type: ignore[no-untyped-def]
    from tests.reliability.standin import run_job

    deps = build_deps(get_settings())
    deps.registry = StandInRegistry()
    deps.run_job = run_job
    return deps


celery_app._deps = _standin_deps()

__all__ = ["app"]
