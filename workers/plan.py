"""The resolved plan of a job: its document with every default made explicit, and the shape it runs at.

`resolve_job` is the one place where a job meets its model's defaults. Everything after it (memory
planning, the steering operations, denoising, decoding, the manifest) reads the plan's typed fields,
which are never `None`, instead of the request's optional ones.
"""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from api_schemas import JobRequest
from workers.errors import JobInputError
from workers.models import LoadedModel
from workers.pipeline import SteerableVideoPipeline


@dataclass(frozen=True)
class JobPlan:
    """A job ready to run: the resolved document and its shape on the model that runs it.

    `job` is the document as the manifest records it (seed, frames, size, decode chunk, fps and a
    sweep's clips per batch filled in); the other fields are read from it once, typed.
    """

    job: JobRequest
    model: str
    seed: int
    num_frames: int
    width: int
    height: int
    steps: int
    fps: int
    decode_chunk_size: int
    clip_count: int
    """Clips the job renders: a sweep's `count`, else one."""
    batch_size: int
    """Clips per UNet batch: a sweep's resolved `batch_size`, else one."""
    embedding_dim: int
    """Width of the model's CLIP image embedding (the `embedding` steering space)."""
    latent_channels: int
    vae_scale_factor: int

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latents (the `latent` steering space)."""
        return self.latent_channels, self.height // self.vae_scale_factor, self.width // self.vae_scale_factor


def resolve_job(job: JobRequest, model: LoadedModel) -> JobPlan:
    """The job with every default made explicit (model, seed, frames, size, decode chunk, fps and a
    sweep's clips per batch), as a plan for `model`."""
    return plan_job(job, model.pipeline, name=model.spec.name, defaults=model.defaults)


def plan_job(job: JobRequest, pipe: SteerableVideoPipeline, *, name: str, defaults: Mapping[str, int]) -> JobPlan:
    """`resolve_job` for a pipeline outside a registry: `defaults` gives the model's `num_frames`,
    `height` and `width` (only those the job leaves unset are read)."""
    if job.anchor is not None and not job.anchor.merged():
        # The service merges an anchor set into the job before it is queued; the engine never reads one.
        raise JobInputError("anchor", f"anchor set {str(job.anchor)!r} is merged by the service: submit the job there")
    gen = job.generation
    num_frames = gen.num_frames or defaults["num_frames"]
    height = gen.height or defaults["height"]
    width = gen.width or defaults["width"]
    generation = gen.model_copy(
        update={
            "num_frames": num_frames,
            "width": width,
            "height": height,
            # Unset: all frames on the CPU (as diffusers does), as many as fit in free memory on CUDA.
            "decode_chunk_size": gen.decode_chunk_size or pipe.decode_chunk_for(num_frames, height, width),
        }
    )
    output = job.output.model_copy(update={"fps": job.output.fps or gen.fps})
    seed = job.seed if job.seed is not None else secrets.randbelow(2**63)
    update = {"model": name, "seed": seed, "generation": generation, "output": output}
    if job.sweep is not None and job.sweep.batch_size is None:
        # Unset: every clip at once on the CPU; on CUDA as many as fit in free memory.
        batch = pipe.denoise_batch_for(job.sweep.count, num_frames, height, width)
        update["sweep"] = job.sweep.model_copy(update={"batch_size": batch})
    resolved = job.model_copy(update=update)
    sweep = resolved.sweep
    return JobPlan(
        job=resolved,
        model=name,
        seed=seed,
        num_frames=num_frames,
        width=width,
        height=height,
        steps=gen.steps,
        fps=gen.fps,
        decode_chunk_size=generation.decode_chunk_size,
        clip_count=sweep.count if sweep else 1,
        batch_size=(sweep.batch_size or sweep.count) if sweep else 1,
        embedding_dim=int(pipe.image_encoder.config.projection_dim),
        latent_channels=pipe.unet.config.in_channels // 2,
        vae_scale_factor=pipe.vae_scale_factor,
    )
