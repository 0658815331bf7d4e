"""The one-line state `vsteer jobs get|wait|events` print for a job."""

from api_schemas import JobResource
from vsteer.commands.server import job_line


def resource(**fields: object) -> JobResource:
    base = {
        "id": "job_1",
        "status": "running",
        "created_at": "2026-12-06T10:00:00Z",
        "model": "tiny",
        "request": {"image": "asset:ast_" + "0" * 28},
    }
    return JobResource.model_validate({**base, **fields})


def test_a_running_job_shows_its_stage_and_its_latest_live_preview():
    progress = {"stage": "denoise", "step": 4, "total": 6, "fraction": 0.667}
    assert job_line(resource(progress=progress)) == "job_1 running denoise 4/6"
    preview = {"step": 4, "total": 6, "image": "data:image/jpeg;base64,AAAA"}
    shown = job_line(resource(progress=progress, preview=preview))
    assert shown == "job_1 running denoise 4/6 (live preview of step 4/6)"
    assert job_line(resource(status="succeeded", progress=progress)) == "job_1 succeeded"
