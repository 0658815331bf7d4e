"""A job too large for the host's memory fails before its GPU work, naming what to lower; the worker lives."""

from pathlib import Path

import pytest

from api_schemas import JobRequest
from workers import memory_plan
from workers.engine import Progress, run_job
from workers.errors import JobInputError, JobTooLarge
from workers.images import ImageResolver
from workers.plan import resolve_job
from workers.settings import EngineSettings

LARGEST_SWEEP = {"num_frames": 128, "width": 2048, "height": 2048, "steps": 200}


def request(image: Path, generation: dict, sweep: dict | None = None) -> JobRequest:
    document = {"seed": 1, "image": str(image), "generation": generation}
    if sweep:
        document["sweep"] = sweep
    return JobRequest.model_validate(document)


def test_the_plan_counts_frames_and_on_the_cpu_the_activations(registry, image_paths):
    model = registry.get("tiny")
    job = resolve_job(request(image_paths[0], LARGEST_SWEEP, {"target": "seed", "to": 2, "count": 16}), model)

    plan = memory_plan.plan_host_memory(job, model.pipeline, "cpu")

    assert plan.frames == int(2.5 * 16 * 128 * 2048 * 2048 * 3 * 4)  # 240 GiB: no worker has that
    assert plan.denoise > 0 and plan.decode > 0
    on_cuda = memory_plan.plan_host_memory(job, model.pipeline, "cuda")
    assert (on_cuda.frames, on_cuda.total) == (plan.frames, plan.frames)  # activations live on the card
    small = resolve_job(request(image_paths[0], {"num_frames": 4, "width": 64, "height": 64, "steps": 2}), model)
    assert memory_plan.plan_host_memory(small, model.pipeline, "cpu").total < 2**30


def test_a_job_over_the_available_memory_fails_before_any_work(registry, image_paths, tmp_path, monkeypatch):
    monkeypatch.setenv("VSTEER_HOST_MEMORY_BYTES", str(64 * 2**20))  # 64 MiB for this worker
    stages: list[Progress] = []
    job = request(image_paths[0], {"num_frames": 8, "width": 1024, "height": 576, "steps": 2})

    resolver = ImageResolver(allow_paths=True)

    with pytest.raises(JobTooLarge) as raised:
        run_job(job, tmp_path, registry=registry, images=resolver, on_progress=stages.append, settings=EngineSettings())

    assert isinstance(raised.value, JobInputError) and raised.value.field == "generation"
    detail = raised.value.detail
    assert "8 frames of 1024x576" in detail and "0.1 GiB available" in detail
    assert "`generation.num_frames`" in detail and "sweep" not in detail
    assert stages == [] and not any(tmp_path.iterdir())  # nothing loaded, encoded or written

    # The same job fits with the memory this machine has: the limit is the only difference.
    monkeypatch.delenv("VSTEER_HOST_MEMORY_BYTES")
    small = request(image_paths[0], {"num_frames": 4, "width": 64, "height": 64, "steps": 1})
    outputs = run_job(
        small, tmp_path, registry=registry, images=ImageResolver(allow_paths=True), settings=EngineSettings()
    )
    assert outputs.files["video"].is_file()


def test_a_sweep_is_told_to_lower_its_count(registry, image_paths, tmp_path, monkeypatch):
    monkeypatch.setenv("VSTEER_HOST_MEMORY_BYTES", str(2**30))
    job = request(image_paths[0], LARGEST_SWEEP, {"target": "seed", "to": 2, "count": 16})
    with pytest.raises(JobTooLarge, match=r"16 clips of 128 frames of 2048x2048 need about \d+\.\d GiB") as raised:
        run_job(job, tmp_path, registry=registry, images=ImageResolver(allow_paths=True), settings=EngineSettings())
    assert "`sweep.count`" in raised.value.detail and "`sweep.batch_size`" in raised.value.detail


@pytest.mark.parametrize("value", ["lots", "-5", "1e9", "1.5"])
def test_a_bad_limit_is_refused(value):
    with pytest.raises(ValueError, match="VSTEER_HOST_MEMORY_BYTES"):
        memory_plan.available_host_bytes(EngineSettings(host_memory_bytes=value).host_memory_bytes)


def test_available_memory_is_read_from_the_host():
    assert memory_plan.available_host_bytes(EngineSettings(host_memory_bytes="1234").host_memory_bytes) == 1234
    available = memory_plan.available_host_bytes(None)
    assert available is not None and available > 0  # Linux: MemAvailable (within a cgroup limit, if any)
