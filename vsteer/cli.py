"""The `vsteer` command line: run and replay jobs in-process, build the tiny model, audit videos."""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from api_schemas import JobRequest
from api_schemas.job import rule_field

if TYPE_CHECKING:
    from workers.settings import EngineSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Latent-space steering of Stable Video Diffusion.")
models_app = typer.Typer(no_args_is_help=True, help="Models: list the registry, build the tiny SVD, train the toy SVD.")
app.add_typer(models_app, name="models")
directions_app = typer.Typer(no_args_is_help=True, help="Semantic directions: discover and save them.")
app.add_typer(directions_app, name="directions")

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
        where = rule_field(".".join(str(part) for part in error["loc"]), error.get("ctx"))
        lines.append(f"{where or '(document)'}: {error['msg']}")
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


def engine_settings() -> "EngineSettings":
    """The engine's settings (`VSTEER_MODELS`, `VSTEER_OUTPUT_THREADS`, …), read once by each command
    that runs the engine; a bad variable ends the command naming it."""
    from workers.settings import EngineSettings

    try:
        return EngineSettings()
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()]
        fail("invalid settings:\n  " + "\n  ".join(problems), EXIT_FAILED)
    raise AssertionError("unreachable")


def default_directions_dir() -> Path:
    """Where `{"id": "dir_…"}` sources are read from: VSTEER_DIRECTIONS_DIR, else ./directions."""
    import os

    return Path(os.environ.get("VSTEER_DIRECTIONS_DIR", "directions"))


def absolute_path(ref: str, base_dir: Path) -> str:
    from api_schemas.refs import RefKind, ref_kind

    if ref_kind(ref) is not RefKind.path:
        return ref
    return str((base_dir / Path(ref).expanduser()).resolve())


def execute(
    job: JobRequest, out: Path, model: str | None, base_dir: Path | None, directions_dir: Path | None = None
) -> dict[str, Any]:
    """Run a job in-process with a progress bar; map failures to exit codes."""
    from tqdm import tqdm

    from workers.directions import DirectionResolver
    from workers.engine import Progress, run_job
    from workers.errors import JobCanceled, JobInputError, ModelUnavailableError
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, quiet_libraries

    settings = engine_settings()
    quiet_libraries()
    registry = ModelRegistry.from_settings(settings)
    if base_dir is not None:
        # Relative paths are read from the job file's folder; the manifest records them absolute.
        job = job.map_image_refs(lambda ref: absolute_path(ref, base_dir))
        if job.video is not None:
            source = absolute_path(job.video.source, base_dir)
            job = job.model_copy(update={"video": job.video.model_copy(update={"source": source})})
    if model is not None:
        try:
            job = job.model_copy(update={"model": registry.register(model)})
        except ModelUnavailableError as exc:
            fail(exc.detail, EXIT_FAILED)
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
            directions=DirectionResolver.from_folder(directions_dir or default_directions_dir()),
            on_progress=on_progress,
            settings=settings,
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
    model: Annotated[str | None, typer.Option(help="A registered model name or a local pipeline folder.")] = None,
    directions: Annotated[
        Path | None, typer.Option(help="Folder of stored directions (VSTEER_DIRECTIONS_DIR, else ./directions).")
    ] = None,
) -> None:
    """Validate a job document and run it here, writing video.mp4, poster, preview and manifest.json."""
    job = load_job(job_file)
    execute(job, out, model, base_dir=job_file.resolve().parent, directions_dir=directions)


@app.command()
def replay(
    manifest_file: Annotated[Path, typer.Argument(help="A manifest.json written by a job.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("replay"),
    model: Annotated[str | None, typer.Option(help="Override the manifest's model (name or folder).")] = None,
    directions: Annotated[
        Path | None, typer.Option(help="Folder of stored directions (VSTEER_DIRECTIONS_DIR, else ./directions).")
    ] = None,
) -> None:
    """Run a manifest's resolved request again; on the same device and dtype the frames are identical.
    A stored direction the job cites must still be the one it read (its sha256 in the manifest)."""
    from workers.manifest import read_manifest

    try:
        manifest = read_manifest(manifest_file)
    except (OSError, ValueError) as exc:
        fail(str(exc), EXIT_INVALID)
    try:
        job = JobRequest.model_validate(manifest["request"])
    except ValidationError as exc:
        fail(format_validation_error(exc), EXIT_INVALID)
    folder = directions or default_directions_dir()
    for problem in changed_directions(job, manifest, folder):
        fail(problem, EXIT_INVALID)
    if model is None:
        recorded = manifest.get("model", {})
        source = Path(recorded.get("source") or "")
        model = str(source) if source.is_dir() else recorded.get("name")
    replayed = execute(job, out, model, base_dir=None, directions_dir=folder)
    same = {
        name: replayed["outputs"].get(name, {}).get("sha256") == entry.get("sha256")
        for name, entry in manifest.get("outputs", {}).items()
        if name in ("frames", "video")
    }
    for name, equal in same.items():
        typer.echo(f"{name:9s} {'identical' if equal else 'DIFFERENT'} to the manifest's")
    if not all(same.values()):
        for line in replay_differences(manifest, replayed):
            typer.echo(line)
        raise typer.Exit(EXIT_FAILED)


def changed_directions(job: JobRequest, manifest: dict[str, Any], folder: Path) -> list[str]:
    """Each stored direction (an id in `folder`, or a file) the recorded run read that is missing or
    no longer the same bytes (sha256 recorded in `steering.directions`); empty when all are as read."""
    from workers.directions import bytes_digest

    recorded = {d["index"]: d for d in (manifest.get("steering") or {}).get("directions", {}).get("directions", [])}
    problems = []
    for i, direction in enumerate(job.directions):
        entry = recorded.get(i) or {}
        pairs = [("source", direction.source, entry.get("sha256"))]
        pairs += zip(
            (f"preserve[{j}]" for j in range(len(direction.preserve))),
            direction.preserve,
            entry.get("preserve_sha256") or [None] * len(direction.preserve),
            strict=True,
        )
        for name, source, digest in pairs:
            if digest is None or (source.id is None and source.path is None):
                continue  # an inline vector is in the request itself; an older manifest has no digests
            path = folder / f"{source.id}.safetensors" if source.id is not None else Path(str(source.path)).expanduser()
            where = f"directions[{i}].{name}"
            if not path.is_file():
                problems.append(f"{where}: {path} is missing; the recorded run read {digest}")
            elif (now := bytes_digest(path.read_bytes())) != digest:
                problems.append(
                    f"{where}: {path} changed since the recorded run (recorded {digest}, now {now}); "
                    "restore that direction to replay the job"
                )
    return problems


def replay_differences(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """What a replay ran on that differs from the recorded run: frames are identical only on the same
    kind of device, dtype, fast-path options, weights and libraries, with the same resolved request."""

    def facts(manifest: dict[str, Any]) -> dict[str, Any]:
        model = manifest.get("model", {})
        fast = {f"fast_path.{k}": v for k, v in (model.get("fast_path") or {}).items()}
        keys = ("device_name", "dtype", "weight_hash")
        device = model.get("device")  # the kind (cuda:0 and cuda:1 are alike; device_name tells the hardware)
        recorded = {"device": device and str(device).split(":")[0], **{k: model.get(k) for k in keys}, **fast}
        # (older manifests lack some of these: a fact not recorded is not a difference)
        run = {k: v for k, v in recorded.items() if v is not None}
        request = flatten(manifest.get("request") or {}, "request.")
        request.pop("request.model", None)  # a name for the weights: weight_hash says whether they are the same
        return {**run, **(manifest.get("libraries") or {}), **request}

    before, now = facts(recorded), facts(replayed)
    lines = [
        f"recorded {key} {value!r}, now {now.get(key)!r}" for key, value in before.items() if value != now.get(key)
    ]
    if "fast_path" not in recorded.get("model", {}):
        lines.append("the recorded run did not record its fast-path options (its manifest predates them)")
    return lines


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (lists stay whole)."""
    if not isinstance(value, dict):
        return {prefix.rstrip("."): value}
    return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}


@models_app.command("tiny")
def models_tiny(
    path: Annotated[Path, typer.Argument(help="Folder to write the tiny SVD to.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Build a tiny random-weight SVD from small configs and save_pretrained it to PATH."""
    from workers.tiny import save_tiny_svd

    save_tiny_svd(path, seed=seed)
    typer.echo(str(path))


@models_app.command("train-toy")
def models_train_toy(
    path: Annotated[Path, typer.Argument(help="Folder to write the trained toy SVD to.")],
    steps: Annotated[
        int | None, typer.Option(help="Steps per network (VAE and UNet) on a small pool; the full run if unset.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights, the data and the training order.")] = 0,
    plot: Annotated[Path | None, typer.Option(help="Write the loss curves to this PNG.")] = None,
    variant: Annotated[
        str,
        typer.Option(
            help="shipped (models/toy's configuration), or a variant: temporal_decoder, colour_tokens, "
            "colour_finish, framewise, framewise_colour or references (docs/toy-model.md)."
        ),
    ] = "shipped",
) -> None:
    """Train the toy SVD (the real architecture at 64x64 on synthetic shapes) and save_pretrained it to PATH."""
    from workers.models import quiet_libraries
    from workers.toy.train import TrainConfig, plot_losses, train_toy

    quiet_libraries()
    try:
        config = TrainConfig.variant(variant, seed) if steps is None else TrainConfig.short(steps, seed, variant)
    except ValueError as exc:
        fail(f"--variant: {exc}", EXIT_INVALID)
    result = train_toy(path, config, log=typer.echo)
    if plot is not None:
        typer.echo(f"loss curves: {plot_losses(result.losses, plot)}")


@models_app.command("list")
def models_list() -> None:
    """The registered models (built-in and VSTEER_MODELS) and where their weights come from."""
    from workers.models import ModelRegistry

    registry = ModelRegistry.from_settings(engine_settings())
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


def read_numbers(value: str, what: str) -> list[float]:
    """Numbers given inline ("1,0,1") or as a file with one per line."""
    path = Path(value)
    text = path.read_text() if path.is_file() else value
    try:
        return [float(x) for x in text.replace(",", "\n").split() if x.strip()]
    except ValueError as exc:
        fail(f"{what}: {exc}", EXIT_INVALID)
    raise AssertionError("unreachable")


# `--images a.png b.png c.png` (what a shell glob gives): the names after the first are extra arguments.
@directions_app.command("fit", context_settings={"allow_extra_args": True})
def directions_fit(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help="pca, ica, supervised, probe, contrastive or text (--server).")],
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Example images: `--images *.png` (a shell glob), or repeat the option."),
    ] = None,
    labels: Annotated[str | None, typer.Option(help="One number per image: inline 1,0,1 or a file.")] = None,
    attribute: Annotated[
        list[str] | None,
        typer.Option(
            "--attribute",
            help="NAME=VALUES: a labelled attribute (one number per image, inline 1,0,1 or a file) the leakage, "
            "MIG and SAP are measured against; repeat for several.",
        ),
    ] = None,
    pairs: Annotated[
        Path | None, typer.Option(help="A file of `with,without` image path pairs, one pair per line.")
    ] = None,
    space: Annotated[str, typer.Option(help="embedding (CLIP image) or latent (VAE).")] = "embedding",
    k: Annotated[int, typer.Option("--k", help="Components for pca / ica.")] = 1,
    model: Annotated[
        str | None,
        typer.Option(
            help=(
                "A registered model name or a local pipeline folder "
                "(with --server: one of its models, its default when left out)."
            )
        ),
    ] = None,
    width: Annotated[int | None, typer.Option(help="Latent space: image width (model default).")] = None,
    height: Annotated[int | None, typer.Option(help="Latent space: image height (model default).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the direction files.")] = Path("directions"),
    name: Annotated[str, typer.Option(help="Id prefix: files are <name>_<k>.safetensors/.json.")] = "dir_fit",
    seed: Annotated[int, typer.Option(help="Seed for ica and the supervised predictor.")] = 0,
    text: Annotated[str | None, typer.Option(help="--method text: the prompt to move toward.")] = None,
    from_text: Annotated[str | None, typer.Option(help="--method text: the prompt to move away from.")] = None,
    server: Annotated[
        str | None,
        typer.Option(
            help="Fit on this server's GPU worker instead of in-process: local images are uploaded first "
            "(`asset:<id>` names one already there) and the directions are stored there (VSTEER_API_KEY)."
        ),
    ] = None,
    key: Annotated[str | None, typer.Option(help="--server's API key (VSTEER_API_KEY).")] = None,
) -> None:
    """Fit semantic directions from encoded images and save them with a leakage report: in-process into
    --out, or with --server on that server, as stored directions jobs cite by id."""
    import torch

    from workers.fitting import encode_images, fit, save_fitted
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, quiet_libraries

    methods = ("pca", "ica", "supervised", "probe", "contrastive", "text")
    if method not in methods:
        fail(f"--method must be one of {', '.join(methods)}, got {method!r}", EXIT_INVALID)
    if space not in ("embedding", "latent"):
        fail(f"--space must be embedding or latent, got {space!r}", EXIT_INVALID)
    resolver = ImageResolver(allow_paths=True)
    extra_images = [Path(arg) for arg in ctx.args]
    if any(arg.startswith("-") for arg in ctx.args):
        fail(f"unexpected option among the images: {' '.join(ctx.args)}", EXIT_INVALID)
    if method == "text":
        if server is None:
            fail("--method text fits on a server's text encoder: give --server", EXIT_INVALID)
        paths = []
    elif method == "contrastive":
        if extra_images:
            fail(f"--method contrastive reads its images from --pairs; unexpected: {' '.join(ctx.args)}", EXIT_INVALID)
        if pairs is None:
            fail("--pairs is required with --method contrastive", EXIT_INVALID)
        rows = [line.split(",") for line in pairs.read_text().splitlines() if line.strip()]
        if any(len(row) != 2 for row in rows):
            fail("--pairs: every line must be `with,without`", EXIT_INVALID)
        paths = [Path(a.strip()) for a, _ in rows] + [Path(b.strip()) for _, b in rows]
    else:
        paths = list(images or []) + extra_images
        if len(paths) < 2:
            fail("--images: give at least 2 images", EXIT_INVALID)
        if method in ("supervised", "probe") and labels is None:
            fail(f"--labels is required with --method {method}", EXIT_INVALID)
    y = torch.tensor(read_numbers(labels, "--labels"), dtype=torch.float64) if labels else None
    attributes = {}
    for spec in attribute or []:
        attr_name, sep, values = spec.partition("=")
        if not sep or not attr_name:
            fail(f"--attribute must be NAME=VALUES, got {spec!r}", EXIT_INVALID)
        attributes[attr_name] = torch.tensor(read_numbers(values, f"--attribute {attr_name}"), dtype=torch.float64)
    if server is not None:
        from vsteer.commands.server import fit_on_server

        half = len(paths) // 2
        fit = {
            "method": method,
            "space": space,
            "model": model,
            "k": k,
            "seed": seed,
            "name": None if name == "dir_fit" else name,
            "labels": y.tolist() if y is not None else None,
            "attributes": {n: v.tolist() for n, v in attributes.items()} or None,
            "text": text,
            "from_text": from_text,
            "width": width,
            "height": height,
        }
        made = fit_on_server(server, key, fit, paths, pairs=method == "contrastive", half=half)
        print_leakage(made.report["leakage"] if made.report else None)
        return
    settings = engine_settings()
    quiet_libraries()
    registry = ModelRegistry.from_settings(settings)
    loaded = registry.get(registry.register(model) if model else None)
    try:
        decoded = [resolver.open(str(path), str(path)) for path in paths]
    except Exception as exc:
        fail(str(exc), EXIT_FAILED)
    size_w, size_h = width or loaded.defaults["width"], height or loaded.defaults["height"]
    X = encode_images(loaded, decoded, space, size_w, size_h)  # type: ignore[arg-type]
    try:
        if method == "contrastive":
            from steering.disentanglement import attribute_report

            half = len(X) // 2
            fitted = fit("contrastive", X[half:], X_b=X[:half], seed=seed)
            if attributes:  # one value per image of the pairs file, in its order: withs, then withouts
                fitted.leakage = attribute_report(fitted.vectors, X, attributes, seed=seed).to_dict()
        else:
            fitted = fit(method, X, k=k, labels=y, attributes=attributes or None, seed=seed)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(str(exc), EXIT_INVALID)
    extra = {"images": [str(p) for p in paths], "width": size_w, "height": size_h}
    saved = save_fitted(fitted, out, name, method=method, space=space, model=loaded, extra=extra)  # type: ignore[arg-type]
    for path in saved:
        typer.echo(str(path))
    print_leakage(fitted.leakage)


def print_leakage(report: dict[str, Any] | None) -> None:
    """A fitted set's MIG, SAP and leakage rows, or why they were not measured."""
    if report is None:
        return
    if report["measured"]:
        figures = "  ".join(f"{k.upper()} {report[k]:.3f}" for k in ("mig", "sap") if report[k] is not None)
        typer.echo(f"against {', '.join(report['attributes'])}: {figures or 'one direction: no MIG or SAP'}")
        for attr_name, row in zip(report["attributes"], report["leakage"], strict=True):
            typer.echo(f"  leakage of {attr_name}: " + " ".join(f"{v:+.2f}" for v in row))
    else:
        typer.echo(f"leakage not measured: {report['reason']}")


def register_service_commands() -> None:
    """`vsteer up` and `vsteer demo`: the local stack, and one job through it over HTTP; `vsteer jobs`,
    `vsteer assets`, `vsteer anchors` and `vsteer compare`: a running server's API."""
    from vsteer.commands import server
    from vsteer.commands.anchors import anchors_app
    from vsteer.commands.compare import compare_app
    from vsteer.commands.server import assets_app, jobs_app
    from vsteer.demo import demo_command
    from vsteer.stack import up_command

    app.command("up")(up_command)
    app.command("demo")(demo_command)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(assets_app, name="assets")
    directions_app.command("upload")(server.upload_direction)
    directions_app.command("list")(server.list_directions)
    directions_app.command("show")(server.show_direction)
    directions_app.command("delete")(server.delete_direction)
    app.add_typer(anchors_app, name="anchors")
    app.add_typer(compare_app, name="compare")


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vsteer {version('vsteer')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Latent-space steering of Stable Video Diffusion."""


register_service_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
