import pytest

from api_schemas.artifacts import content_type_for
from storage.keys import asset_key, check_key, direction_key, job_key, job_prefix


def test_layout():
    assert job_prefix("acme", "job_1") == "jobs/acme/job_1/"
    assert job_key("acme", "job_1", "video.mp4") == "jobs/acme/job_1/video.mp4"
    assert job_key("acme", "job_1", "clips/3.mp4") == "jobs/acme/job_1/clips/3.mp4"
    assert asset_key("acme", "a_9f2c") == "assets/acme/a_9f2c"
    assert direction_key("acme", "dir_smile") == "directions/acme/dir_smile.safetensors"
    assert direction_key("acme", "dir_smile", "json") == "directions/acme/dir_smile.json"


@pytest.mark.parametrize("bad", ["..", "a/b", "", ".hidden", "x" * 200, "a b"])
def test_ids_that_could_escape_their_prefix_are_refused(bad):
    with pytest.raises(ValueError):
        job_prefix(bad, "job_1")
    with pytest.raises(ValueError):
        asset_key("acme", bad)


@pytest.mark.parametrize("bad", ["../x", "/video.mp4", "a/../../b", "clips/.x"])
def test_job_output_names_stay_inside_the_job(bad):
    with pytest.raises(ValueError):
        job_key("acme", "job_1", bad)


def test_check_key_accepts_the_layout():
    assert check_key("jobs/acme/job_1/clips/0.mp4")


def test_content_types():
    assert content_type_for("video.mp4") == "video/mp4"
    assert content_type_for("clips/0.mp4") == "video/mp4"
    assert content_type_for("manifest.json") == "application/json"
    assert content_type_for("preview.gif") == "image/gif"
    assert content_type_for("frames.npy") == "application/octet-stream"
