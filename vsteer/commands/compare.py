"""`vsteer compare …`: comparisons on a running server (submit, get, wait, cancel, download).

    vsteer compare submit examples/compare.json --model tiny --model tiny-b --download out/compare

The job file is a job document without `model` (its local image files are uploaded first, as for
`vsteer jobs submit`); the file may also be a whole comparison, `{"models": [...], "job": {...}}`.
"""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from api_schemas.comparisons import ComparisonResource
from vsteer.client import Client
from vsteer.commands.server import (
    EXIT_FAILED,
    EXIT_INVALID,
    AsJson,
    Key,
    Server,
    connect,
    fail,
    read_document,
    upload_files,
)

compare_app = typer.Typer(no_args_is_help=True, help="Comparisons on a running server: one job on several models.")

Timeout = Annotated[float, typer.Option(help="Seconds to wait for the comparison.")]


def comparison_line(comparison: ComparisonResource) -> str:
    children = ", ".join(f"{c.model} {c.status.value}" for c in comparison.children)
    reason = f" ({comparison.error.detail})" if comparison.error is not None else ""
    return f"{comparison.id} {comparison.status.value} [{children}] seed {comparison.seed}{reason}"


def table_lines(comparison: ComparisonResource) -> list[str]:
    """The table of audit figures and timings, one line per child, and why each failed child failed."""
    lines = []
    if comparison.result is not None:
        lines.append(f"{'model':16s} {'status':9s} {'size':>13s} {'flicker':>8s} {'warp':>8s}  flagged  seconds")
        for row in comparison.result.table:
            size = f"{row.num_frames}x{row.width}x{row.height}" if row.width else "-"
            flicker = f"{row.flicker:.4f}" if row.flicker is not None else "-"
            warp = f"{row.warp_error:.4f}" if row.warp_error is not None else "-"
            seconds = f"{sum(row.timings.values()):.1f}" if row.timings else "-"
            flagged = ",".join(map(str, row.flagged_frames)) or "-"
            status = row.status.value
            lines.append(f"{row.model:16s} {status:9s} {size:>13s} {flicker:>8s} {warp:>8s}  {flagged:7s}  {seconds}")
    for child in comparison.failed:
        why = child.error.detail or child.error.title if child.error is not None else "unknown"
        lines.append(f"{child.model} failed: {why}")
    return lines


def show_comparison(comparison: ComparisonResource, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(comparison.model_dump(mode="json"), indent=2))
        return
    typer.echo(comparison_line(comparison))
    for line in table_lines(comparison):
        typer.echo(line)


def _progress(comparison: ComparisonResource) -> None:
    typer.echo(comparison_line(comparison), err=True)


def _wait(client: Client, comparison_id: str, timeout: float) -> ComparisonResource:
    try:
        return client.wait_comparison(comparison_id, timeout=timeout, on_progress=_progress)
    except TimeoutError as exc:
        fail(str(exc), EXIT_FAILED)
        raise AssertionError("unreachable") from None


def _download(client: Client, comparison: ComparisonResource, folder: Path) -> None:
    result = comparison.result
    if result is None:
        fail(f"comparison {comparison.id} {comparison.status.value}: nothing to download", EXIT_FAILED)
        return
    for name, path in sorted(client.download_comparison(client.get_comparison(comparison.id), folder).items()):
        typer.echo(f"{name:13s} {path}")
    table = folder / "table.json"
    table.write_text(json.dumps([row.model_dump(mode="json") for row in result.table], indent=2) + "\n")
    typer.echo(f"{'table':13s} {table}")


def comparison_document(path: Path, models: list[str] | None, client: Client) -> dict[str, Any]:
    """`{"models", "job"}` from the file (a job document, or a whole comparison) and `--model`s, with
    the job's local image files uploaded."""
    doc = read_document(path)
    if "job" in doc and isinstance(doc["job"], dict):
        job, named = doc["job"], doc.get("models")
    else:
        job, named = doc, None
    chosen = models or named
    if not chosen:
        fail("name the models: --model NAME (twice or more), or `models` in the file", EXIT_INVALID)
    return {"models": chosen, "job": upload_files(client, job, path.resolve().parent)}


@compare_app.command("submit")
def submit(
    job_file: Annotated[Path, typer.Argument(help="The job document (JSON, no `model`), or a whole comparison.")],
    model: Annotated[list[str] | None, typer.Option("--model", help="A model to run it on (repeat).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the comparison until it ends.")] = False,
    download: Annotated[
        Path | None, typer.Option(help="Wait, then save the side-by-side, contact sheet and table here.")
    ] = None,
    timeout: Timeout = 3600.0,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Run one job on several models: one child job per model, one seed for all."""
    with connect(server, key) as client:
        body = comparison_document(job_file, model, client)
        comparison = client.compare(body["models"], body["job"])
        typer.echo(f"submitted {comparison.id}", err=True)
        if wait or download is not None:
            comparison = _wait(client, comparison.id, timeout)
        show_comparison(comparison, as_json)
        if download is not None and comparison.result is not None:
            _download(client, comparison, download)
        if comparison.status.is_terminal() and comparison.result is None:
            raise typer.Exit(EXIT_FAILED)


@compare_app.command("get")
def get(comparison_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """A comparison's children, and once done its table."""
    with connect(server, key) as client:
        show_comparison(client.get_comparison(comparison_id), as_json)


@compare_app.command("wait")
def wait_command(
    comparison_id: str, timeout: Timeout = 3600.0, server: Server = None, key: Key = None, as_json: AsJson = False
) -> None:
    """Wait until the comparison ends (its side-by-side made, or every child failed, or canceled)."""
    with connect(server, key) as client:
        comparison = _wait(client, comparison_id, timeout)
        show_comparison(comparison, as_json)
        if comparison.result is None:
            raise typer.Exit(EXIT_FAILED)


@compare_app.command("cancel")
def cancel(comparison_id: str, server: Server = None, key: Key = None, as_json: AsJson = False) -> None:
    """Cancel every child still queued or running."""
    with connect(server, key) as client:
        show_comparison(client.cancel_comparison(comparison_id), as_json)


@compare_app.command("download")
def download_command(
    comparison_id: str,
    folder: Annotated[Path, typer.Argument(help="Where to save video.mp4, contact_sheet.png and table.json.")],
    server: Server = None,
    key: Key = None,
) -> None:
    """Save a finished comparison's side-by-side, contact sheet and table (sha256-checked)."""
    with connect(server, key) as client:
        _download(client, client.get_comparison(comparison_id), folder)
