"""A `text` direction through the whole service: HTTP in, the worker's tiny model reads the texts with
its tiny text tower, the manifest records them."""

import io
import json

import pytest

from api_schemas import JobStatus
from tests.conftest import make_image
from tests.integration.conftest import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_text_direction_job_runs_on_the_worker_and_its_manifest_records_the_texts(service: Service, tmp_path):
    buffer = io.BytesIO()
    make_image(4, (96, 80)).save(buffer, format="PNG")
    with service.client() as client:
        assert {m.name: m.text_encoder for m in client.models().items} == {"tiny": True}
        asset = client.upload_asset("face.png", data=buffer.getvalue()).id
        source = {"text": "a smiling face", "from_text": "a neutral face"}
        job = client.submit(
            {
                "model": "tiny",
                "seed": 3,
                "image": f"asset:{asset}",
                "directions": [{"source": source, "strength": {"from": 0.0, "to": 2.0, "over": "frames"}}],
                "generation": {"num_frames": 4, "width": 64, "height": 64, "steps": 2},
                "output": {"preview": "none"},
            }
        )
        job = client.wait(job.id, timeout=240)
        assert job.status is JobStatus.succeeded, job.error
        files = client.download(job, tmp_path, ["manifest"])
    manifest = json.loads(files["manifest"].read_text())
    (direction,) = manifest["steering"]["directions"]["directions"]
    assert direction["source"] == "text"
    assert (direction["text"], direction["from_text"]) == (source["text"], source["from_text"])
    assert direction["sha256"].startswith("sha256:")
    assert manifest["model"]["text_encoder"]["width"] == 32
