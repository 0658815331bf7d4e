"""The side-by-side of a comparison: columns padded to one cell size, labelled, aligned in time."""

import numpy as np
import pytest

from workers.comparison import LABEL_HEIGHT, Clip, contact_sheet_image, side_by_side


def clip(label: str, frames: int, height: int, width: int, fps: float) -> Clip:
    # frame f is filled with the value 10 * (f + 1), so which frame a column shows can be read back
    values = (10 * (np.arange(frames) + 1)).astype(np.uint8)
    return Clip(label, np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy(), fps)


def test_columns_are_padded_to_the_largest_clip_and_labelled():
    frames, fps = side_by_side([clip("small", 4, 32, 48, 8), clip("large", 4, 64, 128, 8)])
    assert fps == 8 and frames.shape == (4, LABEL_HEIGHT + 64, 2 * 128, 3)
    # the small clip is centred in its cell: black around it, its frames inside
    assert frames[0, LABEL_HEIGHT + 16 : LABEL_HEIGHT + 48, 40:88].min() == 10
    assert frames[0, LABEL_HEIGHT:, :40].max() == 0 and frames[0, LABEL_HEIGHT : LABEL_HEIGHT + 16, :128].max() == 0
    # the label bars carry text (more than one colour)
    for left in (0, 128):
        assert len(np.unique(frames[0, :LABEL_HEIGHT, left : left + 128])) > 1


def test_clips_are_aligned_in_time():
    # 4 frames at 4 fps (1 s) beside 6 frames at 12 fps (0.5 s): 12 fps for 1 s
    frames, fps = side_by_side([clip("slow", 4, 16, 16, 4), clip("fast", 6, 16, 16, 12)])
    assert fps == 12 and len(frames) == 12
    slow = frames[:, LABEL_HEIGHT, 0, 0] // 10 - 1
    fast = frames[:, LABEL_HEIGHT, 16, 0] // 10 - 1
    assert slow.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert fast.tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5]  # the shorter clip holds its last frame


def test_contact_sheet_stacks_moments_from_first_to_last():
    frames, _ = side_by_side([clip("a", 8, 16, 16, 8), clip("b", 8, 16, 16, 8)])
    sheet = contact_sheet_image(frames, rows=4)
    assert sheet.shape == (4 * frames.shape[1], frames.shape[2], 3)
    shown = sheet[LABEL_HEIGHT :: frames.shape[1], 0, 0] // 10 - 1
    assert shown.tolist() == [0, 2, 5, 7]


def test_no_clip_is_an_error():
    with pytest.raises(ValueError, match="at least one clip"):
        side_by_side([])
