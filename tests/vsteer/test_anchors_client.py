"""Anchor sets through the Python client and `vsteer anchors …`, against the API under uvicorn on a real Redis."""

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from service.app import create_app
from tests.servers import serve_in_thread
from tests.service.conftest import KEY_A, KEY_B, make_settings, png
from vsteer.cli import app
from vsteer.client import AsyncClient, Client, VsteerError


@pytest.fixture
def server_url(tmp_path: Path, redis_url: str) -> Iterator[str]:
    server = serve_in_thread(create_app(make_settings(tmp_path, redis_url)))
    try:
        yield server.url
    finally:
        server.stop()


def test_client_creates_versions_reads_lists_and_deletes(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "ref.png").write_bytes(png())
    with Client(server_url, KEY_A) as vs:
        ref = vs.upload_asset(tmp_path / "ref.png")
        anchor = vs.create_anchor(
            {"name": "look", "seed": 5, "references": [{"image": f"asset:{ref.id}", "weight": 0.5}]}
        )
        assert anchor.id.startswith("anc_") and anchor.version == 1 and anchor.seed == 5
        assert anchor.fields() == {"seed": 5, "references": [{"image": f"asset:{ref.id}", "weight": 0.5}]}
        second = vs.add_anchor_version(anchor.id, {"seed": 6, "generation": {"steps": 3}})
        assert (second.version, second.name, second.fields()) == (2, "look", {"seed": 6, "generation": {"steps": 3}})
        assert vs.get_anchor(anchor.id, 1).sha256 == anchor.sha256
        assert vs.get_anchor(anchor.id).version == 2
        assert [a.id for a in vs.list_anchors().items] == [anchor.id]

        job = vs.submit({"image": f"asset:{ref.id}", "anchor": f"{anchor.id}@1", "seed": 9})
        assert job.request.anchor is not None and job.request.anchor.sha256 == anchor.sha256
        assert job.request.seed == 9 and job.request.references[0].image == f"asset:{ref.id}"

        # the schema's rules hold before anything is sent
        with pytest.raises(ValueError, match="image"):
            vs.create_anchor({"name": "x", "image": f"asset:{ref.id}"})
        vs.delete_anchor(anchor.id)
        with pytest.raises(VsteerError) as gone:
            vs.get_anchor(anchor.id)
        assert gone.value.status == 404
    with Client(server_url, KEY_B) as other, pytest.raises(VsteerError) as theirs:
        other.get_anchor(second.id)
    assert theirs.value.status == 404


def test_async_client(server_url: str) -> None:
    async def main() -> None:
        async with AsyncClient(server_url, KEY_A) as vs:
            anchor = await vs.create_anchor({"name": "a", "model": "svd"})
            again = await vs.add_anchor_version(anchor.id, {"model": "svd-xt"})
            assert (await vs.get_anchor(anchor.id, 1)).model == "svd" and again.version == 2
            assert [a.version for a in (await vs.list_anchors()).items] == [2]
            await vs.delete_anchor(anchor.id)
            assert (await vs.list_anchors()).items == []

    anyio.run(main)


def test_cli_anchors_commands(server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTEER_URL", server_url)
    monkeypatch.setenv("VSTEER_API_KEY", KEY_A)
    runner = CliRunner()
    (tmp_path / "style.png").write_bytes(png())
    (tmp_path / "anchor.json").write_text(
        json.dumps({"name": "house", "seed": 4, "style": {"image": "style.png", "strength": 0.5}})
    )
    created = runner.invoke(app, ["anchors", "create", str(tmp_path / "anchor.json"), "--json"])
    assert created.exit_code == 0, created.output
    anchor = json.loads(created.stdout[created.stdout.index("{") :])
    assert anchor["style"]["image"].startswith("asset:")  # the local file was uploaded
    assert anchor["version"] == 1 and "generation" not in anchor

    (tmp_path / "v2.json").write_text(json.dumps({"seed": 8}))
    versioned = runner.invoke(app, ["anchors", "version", anchor["id"], str(tmp_path / "v2.json")])
    assert versioned.exit_code == 0, versioned.output
    assert versioned.stdout.startswith(f"{anchor['id']}@2  'house'  seed")

    shown = runner.invoke(app, ["anchors", "show", f"{anchor['id']}@1"])
    assert shown.exit_code == 0 and json.loads(shown.stdout) == {**anchor, "latest_version": 2}
    listed = runner.invoke(app, ["anchors", "list"])
    assert listed.exit_code == 0 and listed.stdout.startswith(f"{anchor['id']}@2")

    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "keyframes": []}))
    bad = runner.invoke(app, ["anchors", "create", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "keyframes" in bad.output

    (tmp_path / "missing.json").write_text(
        json.dumps({"name": "x", "references": [{"image": "asset:ast_no", "weight": 1}]})
    )
    missing = runner.invoke(app, ["anchors", "create", str(tmp_path / "missing.json")])
    assert missing.exit_code == 1 and "references[0].image: no asset 'ast_no'" in missing.output

    deleted = runner.invoke(app, ["anchors", "delete", anchor["id"]])
    assert deleted.exit_code == 0
    gone = runner.invoke(app, ["anchors", "show", anchor["id"]])
    assert gone.exit_code == 1 and "404" in gone.output


def test_the_example_anchor_set_and_a_job_citing_it(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTEER_URL", server_url)
    monkeypatch.setenv("VSTEER_API_KEY", KEY_A)
    examples = Path(__file__).resolve().parents[2] / "examples"
    runner = CliRunner()
    created = runner.invoke(app, ["anchors", "create", str(examples / "anchor-set.json")])
    assert created.exit_code == 0, created.output
    citation = created.stdout.split()[0]
    assert citation.startswith("anc_") and citation.endswith("@1")

    args = ["jobs", "submit", str(examples / "anchored-job.json"), "--anchor", citation, "--json"]
    submitted = runner.invoke(app, args)
    assert submitted.exit_code == 0, submitted.output
    request = json.loads(submitted.stdout[submitted.stdout.index("{") :])["request"]
    assert request["anchor"]["id"] == citation.split("@")[0] and request["anchor"]["version"] == 1
    assert request["seed"] == 42 and request["references"][0]["image"].startswith("asset:")
    assert request["generation"]["steps"] == 4 and request["generation"]["num_frames"] == 8
    assert request["generation"]["guidance"] == {"min": 1.0, "max": 2.5, "shape": "triangle"}
