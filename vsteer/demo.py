"""`vsteer demo --out out/`: one steering job end to end through HTTP, on a local stack.

It starts the stack (`vsteer.stack`), uploads two pictures (a red circle, a blue square), submits a
keyframe morph from one to the other anchored by a reference to the first, follows its progress,
downloads the MP4 and the manifest to `out` and stops the stack. The trained toy model (the
default) runs it in seconds on a CPU; with real weights configured (`VSTEER_DEFAULT_MODEL`,
`VSTEER_MODELS`) pass `--model` and a size the model supports.
"""

import io
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from api_schemas import JobResource
from vsteer.client import Client
from vsteer.stack import StackError, default_model, start_stack


def shape_picture(shape: str, colour: str, size: int) -> bytes:
    """A PNG of one of the toy model's shapes (left of centre, on grey) at `size`: what the toy model
    was trained on, and a plain, recognisable picture for any other."""
    from PIL import Image

    from workers.toy.data import still

    scale = size / 64
    picture = still(shape, colour, centre=(24.0 * scale, 32.0 * scale), radius=10.0 * scale, size=size)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


# Frames and denoising steps of the demo per model when not given: the trained toy model at the frame
# count it learned and enough steps for a clean picture; the random tiny one as fast as it goes.
DEMO_FRAMES_STEPS = {"toy": (8, 25), "tiny": (6, 4)}


def demo_job(assets: list[str], model: str, size: int, frames: int, steps: int) -> dict[str, Any]:
    """A keyframe morph from the first picture to the second, anchored by a reference to the first."""
    return {
        "model": model,
        "seed": 7,
        "keyframes": [{"image": f"asset:{assets[0]}", "at": 0.0}, {"image": f"asset:{assets[1]}", "at": 1.0}],
        "interpolation": "slerp",
        "references": [{"image": f"asset:{assets[0]}", "weight": 0.5}],
        "generation": {"num_frames": frames, "width": size, "height": size, "steps": steps, "fps": 7},
        "output": {"preview": "gif"},
        "metadata": {"source": "vsteer demo"},
    }


def show_progress(job: JobResource) -> None:
    if job.progress is not None:
        p = job.progress
        typer.echo(f"  {job.status.value:<9} {p.stage:<10} {p.step}/{p.total}")
    else:
        typer.echo(f"  {job.status.value}")


def run_demo(
    client: Client, out: Path, *, model: str, size: int, frames: int, steps: int, timeout_s: float
) -> JobResource:
    """Upload, submit, wait, download; returns the finished job (raises when it did not succeed)."""
    # 1. upload the pictures: a red circle and a blue square
    assets = [
        client.upload_asset(f"{colour}-{shape}.png", data=shape_picture(shape, colour, size)).id
        for shape, colour in (("circle", "red"), ("square", "blue"))
    ]
    # 2. submit the job
    job = client.submit(demo_job(assets, model, size, frames, steps))
    typer.echo(f"submitted {job.id}")
    # 3. follow it
    job = client.wait(job.id, timeout=timeout_s, on_progress=show_progress, raise_on_failure=True)
    # 4. download the video, the manifest, the poster and the preview
    files = client.download(job, out)
    for name, path in sorted(files.items()):
        typer.echo(f"  {name:<9} {path}")
    return job


def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for video.mp4, manifest.json, poster.png, preview.gif.")] = Path(
        "out"
    ),
    model: Annotated[
        str | None,
        typer.Option(help="Model to run: VSTEER_DEFAULT_MODEL, else the trained toy model (tiny without its weights)."),
    ] = None,
    size: Annotated[int, typer.Option(help="Width and height, a multiple of 64.")] = 64,
    frames: Annotated[int | None, typer.Option(help="Frames of the clip (toy 8, tiny 6, else 14).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (toy 25, tiny 4, else 25).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job.")] = 600.0,
) -> None:
    """Start a local stack, run one steering job through HTTP, save its MP4 and manifest, stop."""
    model = model or default_model(os.environ)
    default_frames, default_steps = DEMO_FRAMES_STEPS.get(model, (14, 25))
    frames, steps = frames or default_frames, steps or default_steps
    typer.echo(f"starting the local stack ({model})…")
    try:
        stack = start_stack(model=model)
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        typer.echo(f"stack up at {stack.url}")
        with Client(stack.url, stack.api_key) as client:
            job = run_demo(client, out, model=model, size=size, frames=frames, steps=steps, timeout_s=timeout)
    except Exception as exc:
        typer.echo(f"error: {exc}", err=True)
        typer.echo(f"logs were in {stack.state_dir / 'logs'}", err=True)
        raise typer.Exit(1) from None
    finally:
        stack.stop()
    manifest = json.loads((out / "manifest.json").read_text())
    generation = job.request.generation
    typer.echo(
        f"done: {out / 'video.mp4'} ({generation.num_frames} frames, {generation.width}x{generation.height}, "
        f"seeds {manifest.get('seeds')}, {manifest.get('timings', {}).get('total', 0):.1f} s)"
    )
