"""`vsteer anchors …`: anchor sets on a running server (create, version, list, show, delete).

An anchor file is JSON: `{"name": "...", "seed": 7, "references": [...], "style": {...}, ...}`, the job
fields an anchor set may hold. Local image files it names are uploaded as assets first, as for jobs.
"""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from api_schemas.anchors import AnchorCreate, AnchorResource, AnchorVersionCreate
from api_schemas.job import set_field
from api_schemas.refs import RefKind, ref_kind
from vsteer.client import Client
from vsteer.commands.server import EXIT_INVALID, AsJson, Key, Server, connect, fail, read_document

anchors_app = typer.Typer(no_args_is_help=True, help="Anchor sets on a running server: bundles of job fields.")

Version = Annotated[int | None, typer.Option("--version", min=1, help="This version (the latest if unset).")]


def anchor_line(anchor: AnchorResource) -> str:
    held = ", ".join(sorted(anchor.fields())) or "no fields"
    return f"{anchor.id}@{anchor.version}  {anchor.name!r}  {held}  (latest {anchor.latest_version})"


def show_anchor_resource(anchor: AnchorResource, as_json: bool) -> None:
    # Only the fields the anchor set holds, as the API sends them: no defaults filled in.
    text = json.dumps(anchor.model_dump(mode="json", by_alias=True, exclude_unset=True), indent=2)
    typer.echo(text if as_json else anchor_line(anchor))


def read_anchor(path: Path, client: Client, *, new: bool) -> dict[str, Any]:
    """The anchor file, checked as the API checks it, with its local image files uploaded."""
    doc = read_document(path)
    try:
        anchor = (AnchorCreate if new else AnchorVersionCreate).model_validate(doc)
    except ValidationError as exc:
        from vsteer.cli import format_validation_error

        fail(format_validation_error(exc), EXIT_INVALID)
        raise AssertionError("unreachable") from None
    uploaded: dict[str, str] = {}
    for field, ref in anchor.image_refs():
        if ref_kind(ref) is not RefKind.path:
            continue
        file = (path.resolve().parent / Path(ref).expanduser()).resolve()
        if not file.is_file():
            fail(f"{field}: no such file: {file}", EXIT_INVALID)
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest not in uploaded:
            uploaded[digest] = f"asset:{client.upload_asset(file).id}"
            typer.echo(f"uploaded {file} as {uploaded[digest]}", err=True)
        set_field(doc, field, uploaded[digest])
    return doc


@anchors_app.command("create")
def create(
    anchor_file: Annotated[Path, typer.Argument(help="The anchor set (JSON: `name` and job fields).")],
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Store a new anchor set; prints `anc_...@1`, what a job's `anchor` cites."""
    with connect(server, key) as client:
        anchor = client.create_anchor(read_anchor(anchor_file, client, new=True))
        show_anchor_resource(anchor, as_json)


@anchors_app.command("version")
def version(
    anchor_id: str,
    anchor_file: Annotated[Path, typer.Argument(help="The whole new bundle (JSON; `name` optional).")],
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """Store the next version of an anchor set; earlier versions stay as they are."""
    with connect(server, key) as client:
        anchor = client.add_anchor_version(anchor_id, read_anchor(anchor_file, client, new=False))
        show_anchor_resource(anchor, as_json)


@anchors_app.command("show")
def show_anchor(anchor_id: str, version: Version = None, server: Server = None, key: Key = None) -> None:
    """An anchor set's fields (JSON), at its latest version or `--version`."""
    if "@" in anchor_id:  # a job's citation, `anc_...@3`
        anchor_id, _, cited = anchor_id.partition("@")
        if not cited.isdigit():
            fail(f"not a version: {cited!r}", EXIT_INVALID)
        version = version or int(cited)
    with connect(server, key) as client:
        show_anchor_resource(client.get_anchor(anchor_id, version), as_json=True)


@anchors_app.command("list")
def list_anchors(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    server: Server = None,
    key: Key = None,
    as_json: AsJson = False,
) -> None:
    """The tenant's anchor sets at their latest versions, newest first."""
    with connect(server, key) as client:
        page = client.list_anchors(limit)
        if as_json:
            typer.echo(json.dumps(page.model_dump(mode="json", by_alias=True, exclude_unset=True), indent=2))
        for anchor in [] if as_json else page.items:
            typer.echo(anchor_line(anchor))


@anchors_app.command("delete")
def delete(anchor_id: str, server: Server = None, key: Key = None) -> None:
    """Delete an anchor set and all its versions (jobs that cited it keep their merged documents)."""
    with connect(server, key) as client:
        client.delete_anchor(anchor_id)
        typer.echo(f"deleted {anchor_id}")
