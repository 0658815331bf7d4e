"""The one declaration of result files: names, file names, content types, and who reads it."""

import pytest

from api_schemas import JobResult
from api_schemas.artifacts import ARTIFACTS, content_type_for, extension_for, split_artifact_name
from jobstate.records import StoredArtifact, StoredResult


def test_the_job_result_and_the_stored_result_list_every_artifact():
    names = {kind.name for kind in ARTIFACTS}
    assert set(JobResult.model_fields) == names | {"metrics"}
    assert set(StoredResult.model_fields) == names | {"metrics"}


@pytest.mark.parametrize(
    ("name", "file_name", "content_type"),
    [
        ("video", "video.mp4", "video/mp4"),
        ("poster", "poster.png", "image/png"),
        ("manifest", "manifest.json", "application/json"),
        ("frames", "frames.npy", "application/octet-stream"),
        ("clips/3", "clips/3.mp4", "video/mp4"),
    ],
)
def test_each_artifact_has_its_file_name_and_content_type(name, file_name, content_type):
    kind, index = split_artifact_name(name)
    assert kind.file(index=index) == file_name
    assert kind.artifact_name(index) == name
    assert content_type_for(file_name) == content_type


def test_the_preview_is_named_for_its_format():
    kind, _ = split_artifact_name("preview")
    assert kind.file(ext="webp") == "preview.webp"
    assert extension_for(content_type_for("preview.webp")) == "webp"
    assert extension_for("image/gif") == "gif"


@pytest.mark.parametrize("name", ["clips", "video/1", "clips/x", "nothing"])
def test_unknown_or_malformed_names_are_refused(name):
    with pytest.raises(KeyError):
        split_artifact_name(name)


def test_stored_results_round_trip_by_name_with_clips_in_order():
    def stored(key: str) -> StoredArtifact:
        return StoredArtifact(key=key, content_type=content_type_for(key), bytes=1)

    by_name = {"video": stored("v.mp4"), "clips/10": stored("c10.mp4"), "clips/2": stored("c2.mp4")}
    by_name |= {"manifest": stored("m.json")}
    result = StoredResult.from_artifacts(by_name, {"timings": {}})
    assert [c.key for c in result.clips] == ["c2.mp4", "c10.mp4"]  # by index, not by string
    assert result.poster is None and result.metrics == {"timings": {}}
    assert result.artifacts() == {"video": by_name["video"], "manifest": by_name["manifest"]} | {
        "clips/0": by_name["clips/2"],
        "clips/1": by_name["clips/10"],
    }
