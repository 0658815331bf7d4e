"""The host memory a job will need, planned before its GPU work and checked against what the host has.

A job within the schema's bounds can still be far too large for the machine that runs it: 16 clips of
128 frames at 2048x2048 are 96 GiB of decoded float32 frames. Run anyway, it would grow until the
kernel killed the worker, and the job would only fail after its worker had crashed several times. So
the engine plans the job's host memory once its shape is resolved and fails it at once, naming what
to lower, when the plan exceeds the memory the host has available.

The plan (bytes):

- decoded frames and what the outputs add to them: FRAME_COPIES x clips x frames x H x W x 3 x 4
  (`bench.host_memory`: the outputs add at most 1.38 times the frames above them; the decode holds
  the frames once plus one clip's conversion);
- on the CPU, where the models' activations live in host memory too: a denoising batch's activations
  (`SteerableVideoPipeline.denoise_bytes`, planned for SVD-XT's channel widths and scaled
  to the model's) and one decode chunk's.

Available: `host_memory_bytes` of the settings (`VSTEER_HOST_MEMORY_BYTES`) when set, else the
kernel's estimate of memory available without swapping (`MemAvailable`), lowered to the room left
under the process's cgroup limit when there is one (a container's memory limit).
"""

from dataclasses import dataclass
from pathlib import Path

from workers.errors import JobTooLarge
from workers.pipeline import SteerableVideoPipeline
from workers.plan import JobPlan

FRAME_COPIES = 2.5
GIB = 2**30
# Channel widths the pipeline's per-pixel activation constants were traced with (SVD-XT).
SVD_UNET_CHANNELS = 320
SVD_VAE_CHANNELS = 128


@dataclass(frozen=True)
class HostPlan:
    frames: int
    denoise: int
    decode: int

    @property
    def total(self) -> int:
        return self.frames + self.denoise + self.decode


def plan_host_memory(plan: JobPlan, pipe: SteerableVideoPipeline, device: str) -> HostPlan:
    """The host bytes of a resolved job."""
    frame_bytes = plan.height * plan.width * 3 * 4
    frames = int(FRAME_COPIES * plan.clip_count * plan.num_frames * frame_bytes)
    if device.startswith("cuda"):
        return HostPlan(frames, 0, 0)
    unet_width = pipe.unet.config.block_out_channels[0] / SVD_UNET_CHANNELS
    denoise = plan.batch_size * pipe.denoise_bytes(plan.num_frames, plan.height, plan.width) * unet_width
    vae_width = pipe.vae.config.block_out_channels[0] / SVD_VAE_CHANNELS
    chunk = min(plan.decode_chunk_size, plan.num_frames)
    decode = chunk * pipe.decode_bytes_per_frame(plan.height, plan.width) * vae_width
    return HostPlan(frames, int(denoise), int(decode))


def available_host_bytes(configured: int | None = None) -> int | None:
    """Bytes this process may still take: the configured amount (`EngineSettings.host_memory_bytes`),
    else MemAvailable within the cgroup's limit; None where neither can be read (not Linux)."""
    if configured is not None:
        return configured
    available = _meminfo_available()
    room = _cgroup_room()
    if available is None or room is None:
        return available if room is None else room
    return min(available, room)


def check_host_memory(
    job_plan: JobPlan, pipe: SteerableVideoPipeline, device: str, host_memory_bytes: int | None = None
) -> HostPlan:
    """Raise JobTooLarge when the job's plan exceeds the host memory available (`host_memory_bytes`
    when configured); else the plan."""
    plan = plan_host_memory(job_plan, pipe, device)
    available = available_host_bytes(host_memory_bytes)
    if available is None or plan.total <= available:
        return plan
    job = job_plan.job
    shape = f"{job_plan.num_frames} frames of {job_plan.width}x{job_plan.height}"
    if job.sweep:
        shape = f"{job_plan.clip_count} clips of {shape}"
    parts = [f"{plan.frames / GIB:.1f} GiB for the decoded frames and outputs"]
    if plan.denoise:
        parts.append(f"{(plan.denoise + plan.decode) / GIB:.1f} GiB for the models' activations on the CPU")
    lower = "`generation.num_frames`, `generation.width`/`height`"
    if job.sweep:
        lower += ", `sweep.count`" + (", `sweep.batch_size`" if plan.denoise else "")
    raise JobTooLarge(
        "generation",
        f"{shape} need about {plan.total / GIB:.1f} GiB of host memory ({', '.join(parts)}), and this worker "
        f"has {available / GIB:.1f} GiB available; lower {lower}",
    )


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's cgroup (v2, else v1); None without a limit."""
    pairs = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ]
    for limit_path, usage_path in pairs:
        try:
            limit = Path(limit_path).read_text().strip()
            usage = int(Path(usage_path).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None  # no limit (v1 reports a huge number)
        return max(0, int(limit) - usage)
    return None
