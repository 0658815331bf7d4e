"""`sweep`: `count` clips along a path, each the single job at its position."""

import pytest
import torch

from workers.errors import JobInputError
from workers.ops.sweep import sweep_positions


def test_positions_include_both_ends():
    assert sweep_positions(1) == [0.0]
    assert sweep_positions(3) == [0.0, 0.5, 1.0]


def test_a_seed_sweep_runs_from_the_job_noise_to_the_other_seeds(planned):
    job = planned(sweep={"target": "seed", "to": 9, "count": 3})
    first, middle, last = (c.noise for c in job.clips)
    assert torch.equal(first, job.ctx.base_noise.latents)
    assert torch.equal(last, job.ctx.draw_latents(9))
    assert abs(middle.norm() / first.norm() - 1) < 0.05  # slerp keeps the shell
    assert [c.params for c in job.clips][1] == {"u": 0.5, "variation": {"seed": 9, "strength": 0.5}}


def test_a_motion_sweep_rounds_each_clips_bucket(planned):
    job = planned(
        generation={"width": 64, "height": 64, "num_frames": 5, "steps": 4, "motion_bucket_id": 100},
        sweep={"target": "motion_bucket_id", "to": 201, "count": 3},
    )
    assert [c.params["motion_bucket_id"] for c in job.clips] == [100, 150, 201]
    time_ids = job.stack(job.clips)[0].added_time_ids
    assert time_ids[:, 1].tolist() == [100.0, 150.0, 201.0]


def test_an_image_sweep_starts_at_the_image_and_ends_at_the_other(planned, image_paths):
    job = planned(sweep={"target": "image", "to": str(image_paths[1]), "count": 2})
    plain, other = planned(), planned(image=str(image_paths[1]))
    conditioning = job.stack(job.clips)[0]
    assert torch.equal(conditioning.tokens[0], plain.stack(plain.clips)[0].tokens[0])
    assert torch.allclose(conditioning.image_latents[1], other.stack(other.clips)[0].image_latents[0], atol=1e-6)


def test_a_geodesic_image_sweep_keeps_to_the_jobs_corpus_read_once_for_every_clip(planned, image_paths, tmp_path):
    from steering.interpolate import MIN_CORPUS
    from vsteer.pictures import smooth_picture

    corpus = []
    for seed in range(MIN_CORPUS):
        smooth_picture(500 + seed, (64, 64)).save(tmp_path / f"{seed}.png")
        corpus.append(str(tmp_path / f"{seed}.png"))
    sweep = {"target": "image", "to": str(image_paths[1]), "count": 3, "interpolation": "geodesic"}
    job = planned(sweep=sweep, corpus=corpus)
    reports = [clip.report for clip in job.clips]
    assert all(r["corpus"] == reports[0]["corpus"] for r in reports)  # one read of the corpus for the job
    assert reports[0]["corpus"]["source"] == "job" and reports[0]["corpus"]["images"] == MIN_CORPUS
    assert reports[1]["embedding"]["interpolation_used"] == "geodesic"


def test_a_direction_sweep_needs_a_number_strength(planned):
    ramp = {"from": 0.0, "to": 1.0}
    with pytest.raises(JobInputError) as raised:
        planned(
            directions=[{"source": {"vector": [1.0] * 32}, "strength": ramp}],
            sweep={"target": "direction", "to": 2.0, "count": 2},
        )
    assert raised.value.field == "directions[0].strength"
