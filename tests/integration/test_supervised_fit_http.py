"""A supervised fit over HTTP stores its attribute predictor with the direction, and a job citing the
direction moves each frame along the predictor's gradient at that frame (the manifest says so)."""

import hashlib
import json

import httpx
import pytest

from api_schemas import JobStatus
from storage.s3 import S3Storage
from tests.integration.conftest import BUCKET, Service
from tests.integration.test_direction_fits import upload_pictures
from workers.directions import read_direction_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_supervised_fit_stores_its_predictor_and_jobs_evaluate_it_per_frame(service: Service) -> None:
    images = upload_pictures(service, range(20, 28))
    labels = [0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6]
    with service.client() as client:
        fit = client.wait_fit(
            client.fit_directions({"method": "supervised", "model": "tiny", "images": images, "labels": labels}).id,
            timeout=240,
        )
        assert fit.status is JobStatus.succeeded, fit.error
        [direction] = fit.directions

        storage = S3Storage(BUCKET, endpoint_url=service.s3.url, access_key_id="testing", secret_access_key="testing")
        stored = storage.get(f"directions/acme/{direction.id}.safetensors")
        assert hashlib.sha256(stored).hexdigest() == direction.sha256
        vector, predictor = read_direction_file(stored, "x")
        assert vector.shape == (32,) and predictor is not None

        keyframes = [{"image": images[0], "at": 0.0}, {"image": images[1], "at": 1.0}]
        job = client.submit({"keyframes": keyframes, "directions": [{"source": {"id": direction.id}, "strength": 1.0}]})
        done = client.wait(job.id, timeout=240)
        assert done.status is JobStatus.succeeded, done.error
        manifest = json.loads(httpx.get(done.result.manifest.url).content)
    (entry,) = manifest["steering"]["directions"]["directions"]
    assert entry["evaluated"] == "gradient_per_frame"
    assert entry["sha256"] == "sha256:" + direction.sha256
