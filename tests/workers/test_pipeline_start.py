"""The pipeline's entry for part-way denoising: given initial latents and a first step index."""

import pytest
import torch

from tests.workers.conftest import SIZE


@pytest.fixture
def batch(planned):
    job = planned()
    conditioning, noise, _ = job.stack(job.clips)
    return job.ctx.pipe, conditioning, noise


def run(pipe, conditioning, noise, record=None, **kwargs):
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))

    def callback(p, i, t, tensors):
        if record is not None:
            record.append((i, tensors["latents"].clone()))
        return tensors

    try:
        latents = pipe(
            conditioning, noise, SIZE["steps"], callback_on_step_end=callback, output_type="latent", **kwargs
        )
    finally:
        hook.remove()
    return latents, len(calls)


def test_given_initial_latents_at_step_zero_are_the_default_path(batch):
    pipe, conditioning, noise = batch
    default, calls = run(pipe, conditioning, noise)
    given, _ = run(pipe, conditioning, noise, latents=noise * pipe.scheduler.init_noise_sigma)
    assert calls == SIZE["steps"]
    assert torch.equal(default, given)


def test_starting_at_a_later_step_runs_only_the_rest(batch):
    pipe, conditioning, noise = batch
    seen: list[tuple[int, torch.Tensor]] = []
    full, _ = run(pipe, conditioning, noise, record=seen)
    # The latents after step 1 are those before step 2: resuming from them ends where the full run did.
    resumed_steps: list[tuple[int, torch.Tensor]] = []
    resumed, calls = run(pipe, conditioning, noise, record=resumed_steps, latents=seen[1][1], first_step=2)
    assert calls == SIZE["steps"] - 2
    assert [i for i, _ in resumed_steps] == [2, 3]
    assert torch.allclose(resumed, full, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"first_step": 4}, "between 0 and 3"), ({"first_step": 1}, "needs the `latents`")]
)
def test_a_first_step_out_of_range_or_without_latents_is_refused(batch, kwargs, message):
    pipe, conditioning, noise = batch
    with pytest.raises(ValueError, match=message):
        run(pipe, conditioning, noise, **kwargs)
