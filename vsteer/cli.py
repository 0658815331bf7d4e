"""The `vsteer` command line: run and replay jobs in-process, build the tiny model, audit videos."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from api_schemas import JobRequest

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Latent-space steering of Stable Video Diffusion."
)
models_app = typer.Typer(no_args_is_help=True, help="Models: list the registry, build the tiny SVD.")
app.add_typer(models_app, name="models")

EXIT_INVALID = 2  # the job document is invalid
EXIT_FAILED = 1  # the job ran and failed (bad image, missing weights)
EXIT_CANCELED = 130


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: the field path, then the rule it broke."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        lines.append(f"{where}: {error['msg']}")
    return "invalid job document:\n  " + "\n  ".join(lines)


def load_job(path: Path) -> JobRequest:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"no such job file: {path}", EXIT_INVALID)
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}", EXIT_INVALID)
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        fail(format_validation_error(exc), EXIT_INVALID)
    raise AssertionError("unreachable")


def absolute_path(ref: str, base_dir: Path) -> str:
    from api_schemas.refs import RefKind, ref_kind

    if ref_kind(ref) is not RefKind.path:
        return ref
    return str((base_dir / Path(ref).expanduser()).resolve())


def execute(job: JobRequest, out: Path, model: str | None, base_dir: Path | None) -> dict[str, Any]:
    """Run a job in-process with a progress bar; map failures to exit codes."""
    from tqdm import tqdm

    from workers.errors import JobCanceled, JobInputError, ModelUnavailableError
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, quiet_libraries
    from workers.runner import Progress, run_job

    quiet_libraries()
    registry = ModelRegistry.from_env()
    if base_dir is not None:
        # Relative paths are read from the job file's folder; the manifest records them absolute.
        job = job.map_image_refs(lambda ref: absolute_path(ref, base_dir))
    if model is not None:
        job = job.model_copy(update={"model": registry.register(model)})
    bar = tqdm(total=job.generation.steps, desc="denoise", unit="step", file=sys.stderr, leave=False)

    def on_progress(progress: Progress) -> None:
        bar.set_description(progress.stage)
        if progress.stage == "denoise":
            bar.n = progress.step
            bar.refresh()

    try:
        outputs = run_job(
            job,
            out,
            registry=registry,
            images=ImageResolver(allow_paths=True),
            on_progress=on_progress,
        )
    except JobInputError as exc:
        fail(f"{exc.field}: {exc.detail}", EXIT_FAILED)
    except ModelUnavailableError as exc:
        fail(exc.detail, EXIT_FAILED)
    except JobCanceled:
        fail("canceled", EXIT_CANCELED)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_CANCELED)
    finally:
        bar.close()
    for name, path in sorted(outputs.files.items()):
        typer.echo(f"{name:9s} {path}")
    return outputs.manifest


@app.command()
def run(
    job_file: Annotated[Path, typer.Argument(help="The job document (JSON).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    model: Annotated[
        str | None, typer.Option(help="A registered model name or a local pipeline folder.")
    ] = None,
) -> None:
    """Validate a job document and run it here, writing video.mp4, poster, preview and manifest.json."""
    job = load_job(job_file)
    execute(job, out, model, base_dir=job_file.resolve().parent)


@app.command()
def replay(
    manifest_file: Annotated[Path, typer.Argument(help="A manifest.json written by a job.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("replay"),
    model: Annotated[str | None, typer.Option(help="Override the manifest's model (name or folder).")] = None,
) -> None:
    """Run a manifest's resolved request again; on the same device and dtype the frames are identical."""
    from workers.manifest import read_manifest

    try:
        manifest = read_manifest(manifest_file)
    except (OSError, ValueError) as exc:
        fail(str(exc), EXIT_INVALID)
    try:
        job = JobRequest.model_validate(manifest["request"])
    except ValidationError as exc:
        fail(format_validation_error(exc), EXIT_INVALID)
    if model is None:
        recorded = manifest.get("model", {})
        source = Path(recorded.get("source") or "")
        model = str(source) if source.is_dir() else recorded.get("name")
    replayed = execute(job, out, model, base_dir=None)
    same = {
        name: replayed["outputs"].get(name, {}).get("sha256") == entry.get("sha256")
        for name, entry in manifest.get("outputs", {}).items()
        if name in ("frames", "video")
    }
    for name, equal in same.items():
        typer.echo(f"{name:9s} {'identical' if equal else 'DIFFERENT'} to the manifest's")
    if not all(same.values()):
        raise typer.Exit(EXIT_FAILED)


@models_app.command("tiny")
def models_tiny(
    path: Annotated[Path, typer.Argument(help="Folder to write the tiny SVD to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build a tiny random-weight SVD from small configs and save_pretrained it to PATH."""
    from workers.tiny import save_tiny_svd

    save_tiny_svd(path, seed=seed)
    typer.echo(str(path))


@models_app.command("list")
def models_list() -> None:
    """The registered models (built-in and VSTEER_MODELS) and where their weights come from."""
    from workers.models import ModelRegistry

    registry = ModelRegistry.from_env()
    for name in registry.names():
        spec = registry.specs[name]
        marker = "*" if name == registry.default else " "
        typer.echo(f"{marker} {name:12s} {spec.source}")


@app.command()
def audit(
    video: Annotated[Path, typer.Argument(help="A video file (MP4).")],
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot of the per-frame scores.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Temporal-consistency audit of any video: flicker, optical-flow warp error, flagged frames."""
    from vsteer.commands.audit import audit_command

    audit_command(video, plot=plot, json_out=json_out)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
