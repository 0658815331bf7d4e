"""What a job leaves in its folder after the decode, written side by side on the CPU's cores.

After the decode a job's work is on the CPU only: the temporal audit of each clip (optical flow), the
H.264 encode of each clip (and of a sweep's contact sheet), the poster, the preview and the raw
frames. None of them reads another's result, and each runs on one thread (x264 on one thread because
its bitstream depends on the thread count), so they run as parallel tasks and the files are the same
whatever the number of threads. On a GPU worker the device sits idle meanwhile, so this is time
taken from every job.

Threads: `output_threads` of the settings (`VSTEER_OUTPUT_THREADS`), or the CPUs this process may use,
at most 4 (a single clip has four tasks, and each task holds working memory: an audit a third of its
clip's float frames, a sweep's clip encode its clip in 8 bits).

Host memory beyond the decoded frames (S bytes of float32): the 8-bit frames the video, poster and
preview share (S/4 for one clip; the contact sheet of a sweep, about as much), plus the running tasks'
working memory (`bench.host_memory`).
"""

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from api_schemas import JobRequest
from api_schemas.artifacts import split_artifact_name
from workers.audit import audit_frames
from workers.video import contact_sheet, to_uint8, write_mp4, write_poster, write_preview

T = TypeVar("T")
DEFAULT_MAX_THREADS = 4


def output_threads(configured: int | None = None) -> int:
    """Threads for a job's outputs: the configured count (`EngineSettings.output_threads`, checked
    when the settings are read), else the CPUs this process may run on, at most DEFAULT_MAX_THREADS."""
    if configured is not None:
        return configured
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, DEFAULT_MAX_THREADS)


class Tasks:
    """A thread pool that keeps the seconds the tasks of each kind ran (waits for a CPU included)."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vsteer-outputs")
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        def timed() -> T:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - start

        return self.pool.submit(timed)

    def __enter__(self) -> "Tasks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def finish_outputs(
    frames: np.ndarray, latents: np.ndarray, job: JobRequest, out_dir: Path, threads: int
) -> tuple[list[dict[str, Any]], dict[str, Path], dict[str, float]]:
    """Audit each clip of `frames` (K, F, H, W, 3) with its `latents` (K, F, C, h, w) and write the
    files, side by side on `threads` threads (`output_threads()`). Returns the audits (one per clip),
    the files by name, and the seconds the audit and the encode tasks ran (`audit_tasks`,
    `video_encode_tasks`; they overlap)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with Tasks(threads) as tasks:
        # Submitted first: the audit is the longest task of a clip.
        audits = [
            tasks.submit("audit_tasks", audit_frames, clip, latents=lat)
            for clip, lat in zip(frames, latents, strict=True)
        ]
        written = write_outputs(frames, job, out_dir, tasks)
        files = {name: future.result() for name, future in written.items()}
        reports = [future.result().to_dict() for future in audits]
    return reports, files, tasks.seconds


def write_outputs(frames: np.ndarray, job: JobRequest, out_dir: Path, tasks: Tasks) -> dict[str, Future[Path]]:
    """Start writing video.mp4, poster.png, the preview and, with `output.raw`, frames.npy (float32 in
    [0, 1]); each future gives its file's path once written.

    `frames` is (K, F, H, W, 3). One clip: the video is that clip and frames.npy is F x H x W x 3.
    A sweep: each clip is clips/<k>.mp4, the video is their contact sheet, and frames.npy is
    K x F x H x W x 3.
    """
    out = job.output
    fps = out.fps
    assert fps is not None
    files: dict[str, Future[Path]] = {}

    def write(name: str, fn: Callable[..., Any], *args: Any, ext: str | None = None, **kwargs: Any) -> None:
        kind, index = split_artifact_name(name)
        path = out_dir / kind.file(ext=ext, index=index)

        def run() -> Path:
            fn(*args, path, **kwargs)
            return path

        files[name] = tasks.submit("video_encode_tasks", run)

    # What the video, poster and preview show, converted to 8 bits once for the three of them.
    if job.sweep is None:
        shown = to_uint8(frames[0])
    else:
        (out_dir / "clips").mkdir(exist_ok=True)
        for k, clip in enumerate(frames):
            write(f"clips/{k}", write_mp4, clip, fps=fps, crf=out.crf)
        shown = contact_sheet(list(frames))
    write("video", write_mp4, shown, fps=fps, crf=out.crf)
    write("poster", write_poster, shown)
    if out.preview != "none":
        write("preview", write_preview, shown, fps=fps, fmt=out.preview, ext=out.preview)
    if out.raw:
        raw = frames[0] if job.sweep is None else frames
        write("frames", save_float32, raw)
    return files


def save_float32(frames: np.ndarray, path: Path) -> None:
    np.save(path, frames.astype(np.float32, copy=False))
