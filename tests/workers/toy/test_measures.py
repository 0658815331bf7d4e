"""The semantic measures, first on synthetic frames whose answers are known."""

import math

import numpy as np
import pytest

from workers.toy import measures
from workers.toy.data import COLOURS, ClipSpec, clip_spec, render, still


@pytest.mark.parametrize("seed", range(6))
def test_the_centroid_follows_the_rendered_shape(seed):
    spec = clip_spec(seed)
    frames = render(spec)
    found = measures.centroids(frames)
    # A triangle's centre of area is its circumcentre here (equilateral): all shapes are centred.
    assert np.abs(found - spec.centres()).max() < 0.6
    assert measures.displacement(frames) == pytest.approx(spec.step_px * (spec.num_frames - 1), abs=0.8)


def test_a_blank_frame_has_no_shape():
    blank = np.full((64, 64, 3), 80, np.uint8)
    assert all(math.isnan(v) for v in measures.centroid(blank))
    assert np.isnan(measures.shape_colour(blank)).all()


@pytest.mark.parametrize(
    ("colour", "expected"), [("red", 2), ("green", 126), ("blue", 229), ("yellow", 53), ("cyan", 184)]
)
def test_the_shape_hue_is_its_colours(colour, expected):
    frame = still("circle", colour, back=(60, 60, 60))
    assert measures.hue_distance(measures.shape_hue(frame), expected) < 4
    assert measures.hue_distance(measures.hue(np.array(COLOURS[colour]) / 255), expected) < 4


def test_hue_distance_wraps_around():
    assert measures.hue_distance(350.0, 10.0) == 20.0
    assert measures.hue_distance(0.0, 180.0) == 180.0


def test_channel_share_of_a_green_picture():
    green = np.zeros((4, 4, 3))
    green[..., 1] = 1.0
    assert measures.channel_share(green, 1) == pytest.approx(1.0, abs=1e-5)
    grey = np.full((4, 4, 3), 0.5)
    assert measures.channel_share(grey, 1) == pytest.approx(1 / 3, abs=1e-5)


def test_psnr_of_known_noise():
    a = np.zeros((8, 8, 3))
    assert measures.psnr(a, a) == math.inf
    assert measures.psnr(a, a + 0.1) == pytest.approx(20.0)
    assert measures.psnr(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(0.0)


def test_a_gradient_background_is_not_a_shape():
    spec = ClipSpec("square", "magenta", "gradient", ((20, 30, 90), (100, 40, 20)), 10.0, (40.0, 30.0), 0, 7, 1)
    (x, y) = measures.centroid(render(spec)[0])
    assert abs(x - 40.0) < 0.5 and abs(y - 30.0) < 0.5
