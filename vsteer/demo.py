"""`vsteer demo --out out/`: one steering job end to end through HTTP, on a local stack.

It starts the stack (`vsteer.stack`), uploads three synthetic pictures, submits a keyframe morph
anchored by a reference image, follows its progress, downloads the MP4 and the manifest to `out`
and stops the stack. The tiny model runs it in seconds on a CPU; with real weights configured
(`VSTEER_DEFAULT_MODEL`, `VSTEER_MODELS`) pass `--model` and a size the model supports.
"""

import io
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from api_schemas import JobResource
from vsteer.client import Client
from vsteer.stack import StackError, start_stack


def synthetic_picture(hue: float, size: int = 128) -> bytes:
    """A PNG of soft concentric bands and a disc, coloured by `hue` in [0, 1): distinct, smooth images."""
    from PIL import Image, ImageDraw

    def channel(phase: float) -> int:
        return int(127 + 120 * math.sin(2 * math.pi * (hue + phase)))

    image = Image.new("RGB", (size, size), (channel(0.0), channel(1 / 3), channel(2 / 3)))
    draw = ImageDraw.Draw(image)
    for ring in range(8, 0, -1):
        r = ring * size // 16
        shade = (channel(0.1 * ring), channel(0.1 * ring + 1 / 3), channel(0.1 * ring + 2 / 3))
        draw.ellipse((size // 2 - r, size // 2 - r, size // 2 + r, size // 2 + r), fill=shade)
    offset = int(size * (0.25 + 0.5 * hue))
    draw.ellipse((offset - size // 8, size // 4, offset + size // 8, size // 2), fill=(250, 250, 250))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_job(assets: list[str], model: str, size: int, frames: int, steps: int) -> dict[str, Any]:
    """A keyframe morph from the first picture to the second, anchored by the third."""
    return {
        "model": model,
        "seed": 7,
        "keyframes": [{"image": f"asset:{assets[0]}", "at": 0.0}, {"image": f"asset:{assets[1]}", "at": 1.0}],
        "interpolation": "slerp",
        "references": [{"image": f"asset:{assets[2]}", "weight": 0.5}],
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
    # 1. upload the pictures
    assets = [
        client.upload_asset(f"picture{k}.png", data=synthetic_picture(hue)).id
        for k, hue in enumerate((0.05, 0.55, 0.3))
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
    model: Annotated[str, typer.Option(help="Model to run (tiny unless real weights are configured).")] = "tiny",
    size: Annotated[int, typer.Option(help="Width and height, a multiple of 64.")] = 64,
    frames: Annotated[int, typer.Option(help="Frames of the clip.")] = 6,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job.")] = 600.0,
) -> None:
    """Start a local stack, run one steering job through HTTP, save its MP4 and manifest, stop."""
    typer.echo("starting the local stack…")
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
