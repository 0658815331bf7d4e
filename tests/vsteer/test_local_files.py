"""`vsteer jobs submit` uploads what a document names by local path: its images and the video it edits."""

from pathlib import Path

import pytest
import typer

from vsteer.commands.server import local_files


def test_images_and_the_video_to_edit_are_found_relative_to_the_document(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "pan.mp4").write_bytes(b"not read here")
    (tmp_path / "style.png").write_bytes(b"not read here")
    doc = {
        "video": {"source": "clips/pan.mp4", "strength": 0.5},
        "style": {"image": "style.png", "strength": 0.5},
    }
    found = dict(local_files(doc, tmp_path))
    assert found == {"video.source": tmp_path / "clips" / "pan.mp4", "style.image": tmp_path / "style.png"}


def test_a_missing_video_ends_the_command_naming_the_field(tmp_path: Path, capsys) -> None:
    with pytest.raises(typer.Exit):
        local_files({"video": {"source": "gone.mp4", "strength": 0.5}}, tmp_path)
    assert "video.source: no such file" in capsys.readouterr().err
