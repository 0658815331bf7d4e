"""A real clip edited end to end: made with PyAV here, uploaded over HTTP, probed, run by a Celery worker on
the tiny SVD, and its result downloaded from S3; a clip whose stored bytes went bad fails its job, not the
worker."""

import json

import numpy as np
import pytest

from api_schemas import JobStatus
from storage.keys import asset_key
from storage.s3 import S3Storage
from tests.integration.conftest import BUCKET, TENANT, Service
from vsteer.pictures import panning_clip
from workers.video import probe, read_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_clip_uploaded_over_http_is_edited_and_its_manifest_records_it(service: Service, tmp_path):
    clip = panning_clip(4, (96, 64), frames=16, fps=8)
    with service.client() as client:
        asset = client.upload_asset("clip.mp4", data=clip)
        assert (asset.kind, asset.frames, asset.width, asset.height) == ("video", 16, 96, 64)
        request = {
            "model": "tiny",
            "seed": 3,
            "generation": {"num_frames": 4, "width": 64, "height": 64, "steps": 4, "fps": 8},
            "video": {"source": f"asset:{asset.id}", "strength": 0.5, "start": 0.5, "noise": "inverted"},
            "output": {"preview": "none"},
        }
        job = client.wait(client.submit(request).id, timeout=240)
        assert job.status is JobStatus.succeeded, job.error
        files = client.download(job, tmp_path)

        # Past the API's probe, the stored clip goes bad: the job fails naming it, and the worker goes on.
        storage = S3Storage(BUCKET, endpoint_url=service.s3.url, access_key_id="testing", secret_access_key="testing")
        storage.put(asset_key(TENANT, asset.id), clip[: len(clip) // 3], "video/mp4")
        broken = client.wait(client.submit(request).id, timeout=240)
        assert broken.status is JobStatus.failed
        assert broken.error.type.endswith("/video-unreadable") and broken.error.field == "video.source", broken.error
        assert service.worker.process.alive()

    info = probe(files["video"])
    assert (info.frame_count, info.width, info.height) == (4, 64, 64)
    assert read_frames(files["video"]).std() > 0.01  # a picture, not a flat frame
    manifest = json.loads(files["manifest"].read_text())
    assert manifest["request"]["video"] == {**request["video"], "fit": "crop"}
    edit = manifest["steering"]["video"]
    assert (edit["first_step"], edit["steps_run"], edit["noise"]) == (2, 2, "inverted")
    source = manifest["inputs"]["video.source"]
    assert source["ref"] == f"asset:{asset.id}" and source["source_frames"] == [4, 5, 6, 7]
    assert np.isclose(source["source_fps"], 8.0)
