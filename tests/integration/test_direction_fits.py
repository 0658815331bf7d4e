"""Fitting directions over HTTP on real servers: the fit runs on the model's GPU worker (the tiny SVD's
encoders), stores its directions where jobs read them, reports its progress and leakage, sends its
webhook, and a job cites what it fitted."""

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import torch

from api_schemas import JobStatus
from storage.s3 import S3Storage
from tests.conftest import make_image
from tests.integration.conftest import BUCKET, Service
from tests.integration.test_server_cli import vsteer
from vsteer.pictures import png_bytes
from workers.directions import read_direction

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def upload_pictures(service: Service, seeds: range) -> list[str]:
    with service.client() as client:
        return [f"asset:{client.upload_asset('p.png', data=png_bytes(make_image(s, (64, 64)))).id}" for s in seeds]


def test_a_pca_fit_runs_on_the_gpu_worker_and_a_job_cites_what_it_stored(service: Service) -> None:
    images = upload_pictures(service, range(6))
    webhook = {"url": service.receiver.url, "events": ["succeeded", "failed"]}
    with service.client() as client:
        queued = client.fit_directions(
            {"method": "pca", "model": "tiny", "images": images, "k": 2, "name": "mood", "webhook": webhook}
        )
        seen: list[str] = []
        fit = client.wait_fit(queued.id, timeout=240, on_progress=lambda f: seen.append(f.status.value))
        assert fit.status is JobStatus.succeeded, fit.error
        assert "succeeded" in seen

        # two directions, in the method's order, each a stored direction of the tenant
        assert [d.id for d in fit.directions] == [f"dir_{fit.id[4:]}_0", f"dir_{fit.id[4:]}_1"]
        first = fit.directions[0]
        assert (first.method, first.space, first.model, first.dimension) == ("pca", "embedding", "tiny", 32)
        assert first.name == "mood 0" and first.fitted_by == fit.id
        assert (
            first.fit is not None
            and first.fit["explained_variance_ratio"] >= fit.directions[1].fit["explained_variance_ratio"]
        )
        assert fit.report is not None and fit.report["leakage"]["measured"] is False  # no attributes given
        assert client.get_direction(first.id) == first
        listed = [d.id for d in client.list_directions().items]
        assert set(listed) >= {d.id for d in fit.directions}
        assert client.list_fits(limit=1).items[0].id == fit.id  # the newest fit

        # the manifest names every input by its bytes' digest, and every output by its file's
        manifest = json.loads(httpx.get(fit.manifest.url).content)
        assert manifest["kind"] == "direction_fit" and [i["ref"] for i in manifest["inputs"]] == images
        assert [d["sha256"] for d in manifest["directions"]] == [d.sha256 for d in fit.directions]

        # the stored file is a unit direction whose digest the resource reports
        storage = S3Storage(BUCKET, endpoint_url=service.s3.url, access_key_id="testing", secret_access_key="testing")
        stored = storage.get(f"directions/acme/{first.id}.safetensors")
        assert hashlib.sha256(stored).hexdigest() == first.sha256
        vector = read_direction(stored, "x")
        assert vector.shape == (32,) and abs(float(torch.linalg.vector_norm(vector)) - 1.0) < 1e-4

        # a job cites it by id and runs
        job = client.submit({"image": images[0], "directions": [{"source": {"id": first.id}, "strength": 1.0}]})
        done = client.wait(job.id, timeout=240)
        assert done.status is JobStatus.succeeded, done.error

        # a direction deleted since is no longer among the fit's: its id would answer 404
        client.delete_direction(fit.directions[1].id)
        assert [d.id for d in client.get_fit(fit.id).directions] == [first.id]
        assert [d.id for d in client.list_fits(limit=1).items[0].directions] == [first.id]

    # the webhook says `direction_fit.succeeded` and carries the fit with its directions
    mine = [json.loads(r.body) for r in service.receiver.wait_for(fit.id)]
    assert [b["type"] for b in mine] == ["direction_fit.succeeded"]
    assert [d["id"] for d in mine[0]["data"]["directions"]] == [d.id for d in fit.directions]


def test_a_supervised_fit_with_attributes_reports_measured_leakage(service: Service) -> None:
    images = upload_pictures(service, range(10, 18))
    labels = [float(i % 2) for i in range(8)]
    with service.client() as client:
        fit = client.wait_fit(
            client.fit_directions(
                {
                    "method": "probe",
                    "model": "tiny",
                    "images": images,
                    "labels": labels,
                    "attributes": {"parity": labels, "half": [float(i < 4) for i in range(8)]},
                }
            ).id,
            timeout=240,
        )
    assert fit.status is JobStatus.succeeded, fit.error
    [direction] = fit.directions
    assert direction.leakage is not None and direction.leakage["measured"] is True
    assert direction.leakage["attributes"] == ["parity", "half"]


def test_a_text_fit_stores_the_normalised_difference_of_the_two_prompts(service: Service, tiny_model_dir: Path) -> None:
    with service.client() as client:
        fit = client.wait_fit(
            client.fit_directions(
                {"method": "text", "model": "tiny", "text": "a red circle", "from_text": "a blue square"}
            ).id,
            timeout=240,
        )
    assert fit.status is JobStatus.succeeded, fit.error
    [direction] = fit.directions
    assert (direction.method, direction.space, direction.dimension) == ("text", "embedding", 32)
    assert direction.fit == {"text": "a red circle", "from_text": "a blue square"}
    assert direction.leakage is not None and direction.leakage["measured"] is False

    # the stored vector is the text tower's own difference, as a job's text source computes it
    from workers.models import ModelRegistry
    from workers.settings import EngineSettings
    from workers.text import text_direction

    registry = ModelRegistry.from_settings(EngineSettings(cache_dir=tiny_model_dir.parent))
    expected = text_direction(registry.get("tiny"), "a red circle", "a blue square")
    storage = S3Storage(BUCKET, endpoint_url=service.s3.url, access_key_id="testing", secret_access_key="testing")
    stored = read_direction(storage.get(f"directions/acme/{direction.id}.safetensors"), "x")
    assert torch.allclose(stored, expected.float(), atol=1e-6)


def test_a_fit_that_fails_on_the_worker_says_why(service: Service) -> None:
    # Two copies of one picture: PCA has no variance to find, which the worker reports as an input error.
    [image] = upload_pictures(service, range(40, 41))
    with service.client() as client:
        fit = client.wait_fit(
            client.fit_directions({"method": "pca", "model": "tiny", "images": [image, image]}).id, timeout=240
        )
    assert fit.status is JobStatus.failed and fit.error is not None
    assert fit.error.status == 422 and "images" in (fit.error.detail or "")
    assert fit.directions == []


def test_the_cli_fits_on_a_server_from_local_images(service: Service, tmp_path: Path) -> None:
    files = []
    for seed in range(50, 55):
        path = tmp_path / f"p{seed}.png"
        path.write_bytes(png_bytes(make_image(seed, (64, 64))))
        files.append(str(path))
    done = vsteer(
        "directions",
        "fit",
        *("--server", service.url, "--method", "pca", "--model", "tiny", "--k", "2", "--images", *files),
        server=service,
    )
    assert done.returncode == 0, done.stderr
    ids = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("dir_")]
    assert len(ids) == 2 and "succeeded" in done.stderr
    with service.client() as client:
        assert client.get_direction(ids[0]).method == "pca"

    # without --model the fit runs on the server's default model, as a job does
    default = vsteer(
        "directions", "fit", "--server", service.url, "--method", "text", "--text", "a smile", server=service
    )
    assert default.returncode == 0, default.stderr
    assert "queued on tiny" in default.stderr and "succeeded" in default.stderr


def test_the_fit_example_runs_as_written(service: Service) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "direction-fit.json"
    with service.client() as client:
        fit = client.wait_fit(client.fit_directions(json.loads(example.read_text())).id, timeout=240)
    assert fit.status is JobStatus.succeeded, fit.error
    assert [d.name for d in fit.directions] == ["vivid"]  # one direction: the set's name
