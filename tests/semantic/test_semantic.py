"""What each steering operation does to the picture, on the trained toy model.

The effect tests elsewhere check what the UNet receives; these check what comes out. Every figure is
measured by `tests.semantic.scenes` (where each scene is described) with the measures of
`workers.toy.measures`, themselves tested on rendered frames whose answer is known. The thresholds
came from a run of `python -m tests.semantic.scenes` on the first committed weights with a margin, and
each is set against what a wrong answer would score; the values quoted beside each are those of the
weights committed now, which meet the same thresholds (`docs/toy-model.md` has the whole report of
both). Jobs run at 64×64, 8 frames, 15 steps, seed 3.
"""

import itertools
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.semantic import scenes as S
from workers.toy import toy_available
from workers.toy.data import COLOURS, still
from workers.toy.measures import hue, hue_distance, psnr

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not toy_available(), reason="the toy model's weights are not in models/toy"),
]


@pytest.fixture(scope="module")
def measure(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """`measure(scenes.plain_job)`: a scene's measurements, each run once for the module."""
    scenes = S.Scenes(S.toy_registry(tiny_model_dir), tmp_path_factory.mktemp("semantic"))
    return cache(lambda scene: scene(scenes))


def test_rank_correlation_on_known_orders():
    assert S.spearman([1, 2, 3, 4, 5], [0.1, 0.5, 0.7, 2.0, 9.0]) == pytest.approx(1.0)
    assert S.spearman([1, 2, 3, 4, 5], [9, 7, 5, 3, 1]) == pytest.approx(-1.0)
    assert abs(S.spearman([1, 2, 3, 4, 5], [3, 1, 5, 2, 4])) < 0.5


# -- a plain job -------------------------------------------------------------------------------------


def test_frame_0_is_close_to_the_conditioning_image(measure, record_property):
    found = measure(S.plain_job)["frame0_psnr_db"]
    record_property("frame0_psnr_db", found)
    # Measured 26.3 dB, near the VAE's own ceiling (its round trip of the same picture scores 26.6 dB;
    # the first weights: 22.6 and 22.8). Most of the frame is the grey background, so even another
    # picture scores 16.9 dB (a blue square elsewhere against the red circle, below): 19.5 dB sits
    # between the first weights' figure and that.
    other = psnr(still("square", "blue", centre=(40.0, 20.0)), still("circle", "red"))
    assert other < 17.5
    assert found >= 19.5


def test_the_shape_moves_and_farther_at_higher_motion_buckets(measure, record_property):
    found = measure(S.plain_job)
    travel = found["displacement_px"]
    record_property("displacement_px", travel)
    # Measured 3.4 / 7.2 / 17.3 / 21.0 / 24.9 px at buckets 0 / 64 / 127 / 191 / 255 (the data moves 0 /
    # 7.7 / 15.2 / 22.9 / 30.6 px): strictly increasing, so every rank agrees.
    assert found["rank_correlation"] >= 0.9
    assert travel[-1] >= 15.0 and travel[0] <= 4.0
    path = found["path_127"]
    assert all(b > a for a, b in itertools.pairwise(path))  # it keeps going right


# -- keyframes ---------------------------------------------------------------------------------------


def test_a_morph_from_a_red_circle_to_a_blue_square_moves_the_hue_toward_blue(measure, record_property):
    found = measure(S.morph)["slerp"]
    hues = found["hue"]
    record_property("hue", hues)
    blue = hue(np.array(COLOURS["blue"]) / 255)
    # Measured: 1° from red in the first frame, 170° in the last (hue 191°: the toy draws blue as cyan,
    # `docs/toy-model.md`), which is 40° from blue against 131° at the start.
    assert found["distance_to_red"][0] <= 35.0
    assert found["distance_to_red"][-1] >= 120.0
    assert hue_distance(hues[-1], blue) <= hue_distance(hues[0], blue) - 30.0


def test_bidirectional_ends_closer_to_the_last_keyframe_than_per_frame_conditioning(measure, record_property):
    found = measure(S.morph)
    slerp, both = (found[k]["last_frame_psnr_to_b_db"] for k in ("slerp", "bidirectional"))
    record_property("last_frame_psnr_to_b_db", {"slerp": slerp, "bidirectional": both})
    # Measured 18.6 dB with per-frame (slerp) conditioning and 24.3 dB bidirectional.
    assert both >= slerp + 1.0


# -- style -------------------------------------------------------------------------------------------


def test_a_green_style_raises_the_green_share_with_its_strength(measure, record_property):
    found = measure(S.style)
    shares = found["green_share"]
    record_property("green_share", shares)
    assert found["strength0_max_diff"] == 0.0  # strength 0 is the plain job, to the last bit
    # The first weights measured 0.3316, 0.3576, 0.3598, 0.3596, 0.3594 at strengths 0, 0.25, 0.5, 0.75,
    # 1: AdaIN sets the latents' statistics to the style's, which they have all but reached at 0.5; after
    # that the share stays put within 0.0004, under 2% of the rise. So: never down by more than 0.001, up
    # by 0.015. The weights now: 0.3208, 0.4193, 0.4322, 0.4340, 0.4342.
    assert raises_the_share(shares)


def raises_the_share(shares: list[float]) -> bool:
    """Never down by more than 0.001 from one strength to the next, and up by 0.015 from strength 0."""
    steady = all(b >= a - 0.001 for a, b in itertools.pairwise(shares))
    return steady and shares[1] - shares[0] >= 0.015 and shares[-1] - shares[0] >= 0.015


def test_the_style_measure_fails_when_the_style_does_nothing(tmp_path, monkeypatch):
    from workers.ops.style import StyleEdit

    monkeypatch.setattr(StyleEdit, "__call__", lambda self, pipe, step, latents: latents)
    shares = S.style(S.Scenes(S.toy_registry(), tmp_path))["green_share"]
    assert not raises_the_share(shares)


# -- directions --------------------------------------------------------------------------------------


def test_a_contrastive_colour_direction_moves_the_colour_monotonically(measure, record_property):
    blueness = measure(S.contrastive_direction)["blue_minus_red"]
    record_property("blue_minus_red", blueness)
    # Fitted in latent space from red → blue pairs, with a red → moved-right direction preserved (the
    # two fitted directions have cosine 0.24). Measured: blue − red of the shape −0.568 → −0.354 over
    # strengths 0 to 2, strictly increasing (the first weights: −0.376 → −0.308, whence the 0.04). The
    # frames show most of that rise is teal halos at the pairs' places, which `shape_colour` counts, while
    # the circle stays red (docs/toy-model.md, "The contrastive colour test counts halos").
    assert all(b > a for a, b in itertools.pairwise(blueness))
    assert blueness[-1] - blueness[0] >= 0.04


@pytest.mark.xfail(
    strict=True,
    reason="on the toy's latents the preserved direction (a red circle moved 8 px right) is not the move the "
    "colour direction makes: the centre moves 0.03 / 0.37 / 1.37 px at strengths 1 / 1.5 / 2 with it preserved "
    "and 1.06 px at 2 without (the first weights: within 0.08 px): docs/toy-model.md",
)
def test_a_preserved_position_stays_put_under_the_colour_direction(measure, record_property):
    place = measure(S.contrastive_direction)["centroid_x"]
    record_property("centroid_x", place)
    assert max(abs(x - place[0]) for x in place) <= 0.5


# -- references --------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="the toy's UNet does not read the CLIP embedding: the first frame's latent holds the colour. A blue "
    "square's reference leaves a red circle's colour where it is (0.002 toward blue over weights 0 to 1, 0.004 "
    "at weight 10). The references training variant passes the number (0.46) by drawing a second shape, and "
    "fails style, segments and motion: docs/toy-model.md",
)
def test_references_of_another_colour_pull_the_colour_toward_them_as_their_weight_grows(measure, record_property):
    distances = measure(S.references)["distance_to_blue"]
    record_property("distance_to_blue", distances)
    assert all(b <= a for a, b in itertools.pairwise(distances))
    assert distances[0] - distances[-1] >= 0.05


# -- editing a clip ----------------------------------------------------------------------------------


def test_an_edit_keeps_the_clips_trajectory_at_low_strength_and_follows_the_image_at_high(measure, record_property):
    found = measure(S.video_edit)
    low, high = found["0.2"], found["1.0"]
    record_property("video_edit", found)
    # The clip: a red circle gliding right from x = 14 at bucket 200; the conditioning image: a blue
    # square at (44, 20). Measured at strength 0.2: 0.56 px from the clip's path, and red (blue − red
    # −0.55); at 1.0: 28.6 px from the clip's path, 7.8 px from the square's place, and blue (+0.44).
    # (The first weights: 0.75 px; 27 px and 6.3 px.)
    assert low["centroid_error_px"] <= 2.0 and low["blue_minus_red"] < 0
    assert high["centroid_error_px"] >= 10.0
    assert high["distance_to_image_centre_px"] <= 8.0 and high["blue_minus_red"] > 0


# -- long video --------------------------------------------------------------------------------------


def test_segments_with_overlap_continue_the_motion_across_the_seam_and_without_it_stall(measure, record_property):
    found = measure(S.segments)
    record_property("segments", found)
    # Measured (the seam step's distance from the median step, px; the largest other step's beside it):
    # overlap 3: 0.40 (0.86), overlap 2: 0.41 (0.75), overlap 1: 0.10 (0.93), overlap 0: 2.36 (0.86)
    # — without overlap the second segment's first frame repeats the first's last (a 0.04 px step). The
    # first weights: 0.20 (0.93), 0.35 (0.77), 0.93 (0.67), 1.72 (0.70).
    for overlap in ("2", "3"):
        assert found[overlap]["seam_jump_px"] <= found[overlap]["largest_other_jump_px"]
    assert found["0"]["seam_jump_px"] > found["0"]["largest_other_jump_px"]
    assert found["0"]["seam_jump_px"] >= max(found[o]["seam_jump_px"] for o in ("2", "3")) + 1.0
    assert found["0"]["seam_step_px"] <= 1.0  # the stall


# -- temporal consistency ----------------------------------------------------------------------------


def test_the_toy_flickers_less_than_the_random_tiny_model(measure, record_property):
    found = measure(S.flicker)
    record_property("flicker", found)
    # Measured 0.0045 (luma 0.0030, change 0.0015) against the random tiny model's 0.0131. The first
    # weights, whose decoder's temporal layers made a frame's brightness depend on its place in the
    # decoded chunk, scored 0.055 (`docs/toy-model.md`).
    assert found["toy"]["flicker"] < found["tiny"]["flicker"]
