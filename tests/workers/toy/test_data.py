"""The toy model's synthetic video: made from seeds, moving as the SVD controls say."""

from dataclasses import replace

import numpy as np
import pytest

from workers.toy.data import COLOURS, FPS_RANGE, SPEED_PER_BUCKET, clip_spec, render, still


def test_the_same_seed_gives_the_same_clip_and_another_seed_another():
    assert np.array_equal(render(clip_spec(5)), render(clip_spec(5)))
    assert not np.array_equal(render(clip_spec(5)), render(clip_spec(6)))


@pytest.mark.parametrize("seed", range(40))
def test_every_clip_keeps_its_shape_inside_the_frame(seed):
    spec = clip_spec(seed)
    xs, ys = spec.centres().T
    assert (xs - spec.radius >= 0).all() and (xs + spec.radius <= spec.size).all()
    assert (ys - spec.radius >= 0).all() and (ys + spec.radius <= spec.size).all()
    assert FPS_RANGE[0] <= spec.fps <= FPS_RANGE[1] and 0 <= spec.motion_bucket_id <= 255


def test_speed_follows_the_motion_bucket_and_the_frame_rate():
    slow, fast = clip_spec(1, motion_bucket_id=50, fps=7), clip_spec(1, motion_bucket_id=200, fps=7)
    assert fast.step_px == pytest.approx(4 * slow.step_px)
    sparse = clip_spec(1, motion_bucket_id=200, fps=10)
    assert sparse.step_px == pytest.approx(SPEED_PER_BUCKET * 200 / 10)
    assert clip_spec(1, motion_bucket_id=0).step_px == 0.0


def test_a_still_is_one_frame_of_the_shape_in_its_colour():
    frame = still("square", "green")
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    # The centre pixel is the shape's colour, a corner the background's.
    assert tuple(frame[32, 24]) == (40, 200, 60) and tuple(frame[0, 0]) == (60, 60, 60)


def test_a_tint_mixes_the_shapes_colour_toward_another_by_its_share():
    spec = replace(clip_spec(3), colour="red", shape="square", background="plain", num_frames=1)
    x, y = (int(v) for v in spec.start)
    red, blue = (np.array(COLOURS[c], dtype=float) for c in ("red", "blue"))
    for share, expected in ((0.0, red), (0.25, 0.75 * red + 0.25 * blue), (1.0, blue)):
        frame = render(replace(spec, tint=("blue", share)))[0]
        assert np.abs(frame[y, x] - expected).max() <= 0.5
        assert tuple(frame[0, 0]) == tuple(render(spec)[0][0, 0])  # the background is untouched
