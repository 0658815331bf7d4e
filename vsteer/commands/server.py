"""`vsteer jobs …` and `vsteer assets …`: the command line of a running server, over its HTTP API.

The server and the key come from `--server` / `--key`, else `VSTEER_URL` / `VSTEER_API_KEY`. A job
document may name local image files: they are uploaded as assets first (each distinct file once, by
its sha256) and the document sent cites `asset:<id>`. Errors are one line each (the field, then the
rule), never a traceback; `--json` prints the API's resources for scripts.
"""

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from api_schemas import JobRequest, JobResource, JobStatus
from api_schemas.directions import DirectionFitResource
from api_schemas.job import set_field
from api_schemas.refs import RefKind, ref_kind
from vsteer.client import Client, DownloadError, JobFailed, VsteerError, WaitTimeout

DEFAULT_SERVER = "http://127.0.0.1:8000"
EXIT_FAILED = 1  # the server refused, or the job failed
EXIT_INVALID = 2  # the document or an option is invalid
EXIT_UNREACHABLE = 3  # no answer from the server

jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a running server: submit, follow, download.")
assets_app = typer.Typer(
    no_args_is_help=True, help="Assets on a running server: upload, list and read images and videos."
)

Server = Annotated[str | None, typer.Option("--server", help="API base URL (VSTEER_URL, else 127.0.0.1:8000).")]
Key = Annotated[str | None, typer.Option("--key", help="API key (VSTEER_API_KEY).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the resource as JSON.")]


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def problem_lines(exc: VsteerError) -> str:
    """The API's problem as one line per broken rule: `field: message`."""
    problem = exc.problem
    if problem.errors:
        return "; ".join(f"{e.field}: {e.message}" for e in problem.errors)
    where = f"{problem.field}: " if problem.field else ""
    return f"{where}{problem.detail or problem.title} ({problem.status})"


@contextmanager
def connect(server: str | None, key: str | None) -> Iterator[Client]:
    """A client of the configured server; API errors and unreachable servers end the command."""
    url = server or os.environ.get("VSTEER_URL") or DEFAULT_SERVER
    api_key = key or os.environ.get("VSTEER_API_KEY")
    try:
        with Client(url, api_key) as client:
            yield client
    except JobFailed as exc:
        fail(f"job {exc.job.id} {exc.job.status.value}: {problem_lines(exc)}", EXIT_FAILED)
    except VsteerError as exc:
        fail(problem_lines(exc), EXIT_FAILED)
    except WaitTimeout as exc:
        fail(str(exc), EXIT_FAILED)
    except DownloadError as exc:
        fail(str(exc), EXIT_FAILED)
    except httpx.TransportError as exc:
        fail(f"cannot reach {url}: {exc}", EXIT_UNREACHABLE)


def show(resource: Any, as_json: bool, line: str) -> None:
    typer.echo(json.dumps(resource.model_dump(mode="json"), indent=2) if as_json else line)


def job_line(job: JobResource) -> str:
    progress = ""
    if job.progress is not None and not job.status.is_terminal():
        p = job.progress
        progress = f" {p.stage} {p.step}/{p.total}" if p.total else f" {p.stage}"
    reason = f" ({job.error.detail})" if job.error is not None and job.error.detail else ""
    shown = f" (live preview of step {job.preview.step}/{job.preview.total})" if job.preview is not None else ""
    return f"{job.id} {job.status.value}{progress}{shown}{reason}"


# --- the document's local files become assets -----------------------------------------------------


def read_document(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"no such job file: {path}", EXIT_INVALID)
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}", EXIT_INVALID)
    if not isinstance(doc, dict):
        fail(f"{path}: a job document is a JSON object", EXIT_INVALID)
    return doc


def local_files(doc: dict[str, Any], base_dir: Path) -> list[tuple[str, Path]]:
    """(field path, file) of every image, and the video to edit, that the document names by a local
    path, relative ones read from `base_dir`; a document the schema refuses ends the command naming
    each field."""
    try:
        job = JobRequest.model_validate(doc)
    except ValidationError as exc:
        from vsteer.cli import format_validation_error

        fail(format_validation_error(exc), EXIT_INVALID)
        raise AssertionError("unreachable") from None
    files = []
    refs = list(job.image_refs())
    if job.video is not None:
        refs.append(("video.source", job.video.source))
    for field, ref in refs:
        if ref_kind(ref) is RefKind.path:
            path = (base_dir / Path(ref).expanduser()).resolve()
            if not path.is_file():
                fail(f"{field}: no such file: {path}", EXIT_INVALID)
            files.append((field, path))
    return files


def upload_files(client: Client, doc: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """The document with each local file replaced by `asset:<id>`, each distinct content uploaded once."""
    by_digest: dict[str, str] = {}
    for field, path in local_files(doc, base_dir):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in by_digest:
            by_digest[digest] = f"asset:{client.upload_asset(path).id}"
            typer.echo(f"uploaded {path} as {by_digest[digest]}", err=True)
        set_field(doc, field, by_digest[digest])
    return doc


# --- following a job --------------------------------------------------------------------------------


class ProgressLine:
    """The job's status, stage and percent on one line of the terminal (a line per change elsewhere)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, job: JobResource) -> None:
        text = job_line(job)
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            if job.status.is_terminal():
                sys.stderr.write("\n")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def wait_and_download(client: Client, job: JobResource, download: Path | None, timeout: float) -> JobResource:
    job = client.wait(job.id, timeout=timeout, on_progress=ProgressLine(), raise_on_failure=True, stream=True)
    if download is not None:
        for name, path in sorted(client.download(client.get(job.id), download).items()):
            typer.echo(f"{name:9s} {path}")
    return job


# --- commands ---------------------------------------------------------------------------------------


@jobs_app.command("submit")
def submit(
    job_file: Annotated[Path, typer.Argument(help="The job document (JSON); local image paths are uploaded.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    download: Annotated[Path | None, typer.Option(help="Wait, then save the results in this folder.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the job.")] = 3600.0,
    anchor: Annotated[
        str | None, typer.Option(help="Cite this anchor set, `anc_...[@version]` (replaces the document's).")
    ] = None,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Submit a job document to the server (uploading the local files it names)."""
    doc = read_document(job_file)
    if anchor is not None:
        doc["anchor"] = anchor
    with connect(server, key) as client:
        job = client.submit(upload_files(client, doc, job_file.resolve().parent))
        typer.echo(f"submitted {job.id}", err=True)
        if wait or download is not None:
            job = wait_and_download(client, job, download, timeout)
        show(job, as_json, job_line(job))


@jobs_app.command("get")
def get(job_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """A job's status, progress and result."""
    with connect(server, key) as client:
        job = client.get(job_id)
        show(job, as_json, job_line(job))


@jobs_app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """The tenant's jobs, newest first."""
    with connect(server, key) as client:
        page = client.list(status, limit)
        if as_json:
            typer.echo(json.dumps(page.model_dump(mode="json"), indent=2))
        for job in [] if as_json else page.items:
            typer.echo(f"{job_line(job)}  {job.created_at:%Y-%m-%d %H:%M:%S}")


@jobs_app.command("wait")
def wait_command(
    job_id: str,
    download: Annotated[Path | None, typer.Option(help="Then save the results in this folder.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 3600.0,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Follow a job until it ends; exits non-zero when it failed or was canceled."""
    with connect(server, key) as client:
        job = wait_and_download(client, client.get(job_id), download, timeout)
        show(job, as_json, job_line(job))


@jobs_app.command("cancel")
def cancel(job_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """Cancel a job: at once when queued, within a step when running."""
    with connect(server, key) as client:
        job = client.cancel(job_id)
        show(job, as_json, job_line(job))


@jobs_app.command("delete")
def delete_job(job_id: str, server: Server = None, key: Key = None) -> None:
    """Delete a finished job: its record and its files (a queued or running job: cancel it first)."""
    with connect(server, key) as client:
        client.delete(job_id)
        typer.echo(f"deleted {job_id}")


@jobs_app.command("download")
def download_command(
    job_id: str,
    out: Annotated[Path, typer.Argument(help="Folder for the video, manifest, poster and preview.")] = Path("."),
    server: Server = None,
    key: Key = None,
) -> None:
    """Save a finished job's files (checked against their sha256)."""
    with connect(server, key) as client:
        job = client.get(job_id)
        if job.result is None:
            fail(f"job {job_id} is {job.status.value}: it has no files", EXIT_FAILED)
        for name, path in sorted(client.download(job, out).items()):
            typer.echo(f"{name:9s} {path}")


@jobs_app.command("events")
def events(job_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """Print the job's state after every change (server-sent events) until it ends."""
    with connect(server, key) as client:
        for job in client.events(job_id):
            typer.echo(json.dumps(job.model_dump(mode="json")) if as_json else job_line(job))


@assets_app.command("upload")
def upload(
    files: Annotated[list[Path], typer.Argument(help="Image or video files.")],
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Upload files; prints each one's `asset:<id>` for job documents."""
    for path in files:
        if not path.is_file():
            fail(f"no such file: {path}", EXIT_INVALID)
    with connect(server, key) as client:
        for path in files:
            asset = client.upload_asset(path)
            show(asset, as_json, f"asset:{asset.id}  {path}  {asset.content_type}")


@assets_app.command("list")
def list_assets(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """The tenant's uploaded images and videos, newest first."""
    with connect(server, key) as client:
        found, cursor = 0, None
        while found < limit:
            page = client.list_assets(limit=min(limit - found, 100), cursor=cursor)
            for asset in page.items:
                show(asset, as_json, asset_line(asset))
            found += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break


def asset_line(asset: Any) -> str:
    pixels = f"  {asset.width}x{asset.height}" if asset.width else ""
    frames = f"  {asset.frames} frames" if asset.frames else ""
    when = f"{asset.created_at:%Y-%m-%d %H:%M}"
    return f"asset:{asset.id}  {asset.content_type}{pixels}{frames}  {asset.bytes} bytes  {when}"


@assets_app.command("get")
def get_asset(asset_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """An asset's record: type, size, pixels."""
    with connect(server, key) as client:
        asset = client.get_asset(asset_id.removeprefix("asset:"))
        show(asset, as_json, asset_line(asset))


# --- stored directions (registered on `vsteer directions`) -----------------------------------------


def direction_line(direction: Any) -> str:
    name = f"  {direction.name}" if direction.name else ""
    return f"{direction.id}  {direction.model} {direction.space} ({direction.dimension} values){name}"


def fit_on_server(
    server: str | None, key: str | None, fit: dict[str, Any], images: list[Path], *, pairs: bool, half: int
) -> DirectionFitResource:
    """`vsteer directions fit --server`: upload the local images (an `asset:<id>` is already there), fit
    on the server's GPU worker with progress on stderr, and print the stored directions."""
    with connect(server, key) as client:
        refs = []
        for image in images:
            name = str(image)
            if name.startswith("asset:"):
                refs.append(name)
                continue
            if not image.is_file():
                fail(f"no such image: {image}", EXIT_INVALID)
            refs.append(f"asset:{client.upload_asset(image).id}")
        if pairs:  # the file's `with` images, then its `without` images
            fit = {**fit, "pairs": [[a, b] for a, b in zip(refs[:half], refs[half:], strict=True)]}
        elif refs:
            fit = {**fit, "images": refs}
        body = {k: v for k, v in fit.items() if v is not None}
        try:
            queued = client.fit_directions(body)
        except ValidationError as exc:
            fail(str(exc), EXIT_INVALID)
        typer.echo(f"fit {queued.id} queued on {queued.model}", err=True)

        def report(fit: DirectionFitResource) -> None:
            p = fit.progress
            where = f" {p.stage} {p.step}/{p.total}" if p is not None and not fit.status.is_terminal() else ""
            typer.echo(f"  {fit.status.value}{where}", err=True)

        done = client.wait_fit(queued.id, timeout=3600, on_progress=report)
        if done.status is not JobStatus.succeeded:
            why = done.error.detail if done.error is not None else done.status.value
            fail(f"fit {done.id} {done.status.value}: {why}", EXIT_FAILED)
        for direction in done.directions:
            typer.echo(direction_line(direction))
        return done


def upload_direction(
    file: Annotated[Path, typer.Argument(help="A safetensors file with a `direction` tensor.")],
    model: Annotated[
        str | None, typer.Option(help="The model whose space it lives in (the server's default when left out).")
    ] = None,
    space: Annotated[str, typer.Option(help="`embedding` or `latent`.")] = "embedding",
    name: Annotated[str | None, typer.Option(help="A name to find it by.")] = None,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Store a direction made elsewhere on the server; jobs cite it as {"id": "dir_..."}."""
    if not file.is_file():
        fail(f"no such file: {file}", EXIT_INVALID)
    with connect(server, key) as client:
        direction = client.upload_direction(file, model, space, name)
        show(direction, as_json, direction_line(direction))


def list_directions(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 100,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """The directions stored on the server, newest first."""
    with connect(server, key) as client:
        items: list[Any] = []
        cursor = None
        while len(items) < limit:
            page = client.list_directions(limit=min(limit - len(items), 500), cursor=cursor)
            items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        if as_json:
            listed = page.model_copy(update={"items": items, "next_cursor": cursor})
            typer.echo(json.dumps(listed.model_dump(mode="json"), indent=2))
        for direction in [] if as_json else items:
            typer.echo(direction_line(direction))


def show_direction(direction_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """One stored direction."""
    with connect(server, key) as client:
        direction = client.get_direction(direction_id)
        show(direction, as_json, direction_line(direction))


def delete_direction(direction_id: str, server: Server = None, key: Key = None) -> None:
    """Delete a stored direction (jobs citing it are refused from then on)."""
    with connect(server, key) as client:
        client.delete_direction(direction_id)
        typer.echo(f"deleted {direction_id}")
