"""workers.video: browser-playable MP4, poster, preview, contact sheet, probe and read-back."""

import hashlib
import struct
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from workers import video


def gradient_clip(frames: int = 8, height: int = 64, width: int = 96) -> np.ndarray:
    """A smooth, slowly moving colour gradient: F×H×W×3 float32 in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = []
    for f in range(frames):
        r = (x + 2 * f) / (width + 2 * frames)
        g = y / height
        b = 0.5 + 0.25 * np.sin((x + y + 3 * f) / 12)
        clip.append(np.stack([r, g, b], axis=-1))
    return np.stack(clip).astype(np.float32)


def box_order(path: Path) -> list[str]:
    """Top-level ISO-BMFF box types, read independently of the module under test."""
    data = path.read_bytes()
    types, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:
            size = len(data) - offset
        types.append(kind.decode("latin-1"))
        offset += size
    return types


def test_mp4_is_h264_yuv420p_with_requested_frames_size_and_fps(tmp_path: Path) -> None:
    clip = gradient_clip(frames=9, height=64, width=96)
    path = tmp_path / "video.mp4"

    info = video.write_mp4(clip, path, fps=7)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == 7.0
        assert [round(float(f.time) * 7) for f in decoded] == list(range(9))
    assert len(decoded) == 9
    assert {(f.format.name, f.width, f.height) for f in decoded} == {("yuv420p", 96, 64)}
    assert info == video.probe(path)
    assert (info.codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", 96, 64)
    assert info.frame_count == 9
    assert info.fps == 7.0
    assert info.duration == pytest.approx(9 / 7)


def test_mp4_has_moov_before_mdat(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    info = video.write_mp4(gradient_clip(), path, fps=7)

    order = box_order(path)
    assert order[0] == "ftyp"
    assert order.index("moov") < order.index("mdat")
    assert info.faststart
    assert video.top_level_boxes(path) == order


def test_faststart_is_false_when_moov_follows_mdat(tmp_path: Path) -> None:
    path = tmp_path / "plain.mp4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=7)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i, image in enumerate(video.to_uint8(gradient_clip(4, 64, 64))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    assert box_order(path).index("mdat") < box_order(path).index("moov")
    assert not video.probe(path).faststart


def test_frames_round_trip_within_h264_tolerance(tmp_path: Path) -> None:
    clip = gradient_clip(frames=6, height=64, width=64)
    path = tmp_path / "video.mp4"
    video.write_mp4(clip, path, fps=7, crf=18)

    back = video.read_frames(path)

    assert back.shape == clip.shape
    assert back.dtype == np.float32
    assert back.min() >= 0.0 and back.max() <= 1.0
    assert np.abs(back - clip).mean() < 0.02


def test_same_frames_give_identical_bytes(tmp_path: Path) -> None:
    clip = gradient_clip(frames=9, height=64, width=96)
    digests = set()
    for k in range(3):
        path = tmp_path / f"{k}.mp4"
        video.write_mp4(clip, path, fps=7)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_fractional_fps_is_kept(tmp_path: Path) -> None:
    info = video.write_mp4(gradient_clip(frames=4), tmp_path / "ntsc.mp4", fps=29.97)
    assert info.fps == pytest.approx(29.97)
    assert info.duration == pytest.approx(4 / 29.97)


@pytest.mark.parametrize(("height", "width"), [(64, 63), (63, 64), (33, 33)])
def test_odd_size_raises(tmp_path: Path, height: int, width: int) -> None:
    path = tmp_path / "odd.mp4"
    with pytest.raises(ValueError, match="even width and height"):
        video.write_mp4(gradient_clip(frames=2, height=height, width=width), path, fps=7)
    assert not path.exists()


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 64, 64), dtype=np.float32), "shape"),
        (np.zeros((2, 64, 64, 4), dtype=np.float32), "shape"),
        (np.zeros((2, 64, 64, 3), dtype=np.int16), "float"),
        (np.full((2, 64, 64, 3), np.nan, dtype=np.float32), "finite"),
    ],
)
def test_bad_frames_raise(tmp_path: Path, frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        video.write_mp4(frames, tmp_path / "bad.mp4", fps=7)


def test_writers_take_8_bit_frames_as_they_are(tmp_path: Path) -> None:
    clip = gradient_clip(frames=4) * 1.2 - 0.1  # overshoots both ends, as the VAE can
    pixels = video.to_uint8(clip)
    assert video.to_uint8(pixels) is pixels

    video.write_mp4(clip, tmp_path / "float.mp4", fps=7)
    video.write_mp4(pixels, tmp_path / "uint8.mp4", fps=7)
    video.write_preview(clip, tmp_path / "float.gif", fps=7)
    video.write_preview(pixels, tmp_path / "uint8.gif", fps=7)

    for name in ("mp4", "gif"):
        assert (tmp_path / f"float.{name}").read_bytes() == (tmp_path / f"uint8.{name}").read_bytes()


def test_uint8_conversion_holds_one_float_frame_not_the_clip() -> None:
    import tracemalloc

    clip = gradient_clip(frames=16, height=64, width=96)
    tracemalloc.start()
    pixels = video.to_uint8(clip)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The result is a quarter of the float clip; a float copy of the whole would make it 1.25.
    assert peak < 0.25 * clip.nbytes + 3 * clip[0].nbytes
    out = np.zeros((16, 70, 100, 3), np.uint8)
    video.to_uint8(clip, out=out[:, 3:67, 2:98])
    np.testing.assert_array_equal(out[:, 3:67, 2:98], pixels)
    assert not out[:, :3].any() and not out[:, :, :2].any()
    with pytest.raises(ValueError, match="out must be"):
        video.to_uint8(clip, out=out)
    with pytest.raises(ValueError, match=r"finite.*frame 2"):
        video.to_uint8(np.where(np.arange(16)[:, None, None, None] == 2, np.nan, clip))


@pytest.mark.parametrize(("fps", "crf"), [(0, 18), (-1, 18), (7, 52), (7, -1)])
def test_bad_fps_or_crf_raises(tmp_path: Path, fps: float, crf: float) -> None:
    with pytest.raises(ValueError, match=r"fps|crf"):
        video.write_mp4(gradient_clip(frames=2), tmp_path / "bad.mp4", fps=fps, crf=crf)


def test_uint8_conversion_clips_and_rounds_half_to_even() -> None:
    values = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.0, 1.7], dtype=np.float64)
    frames = np.broadcast_to(values[None, None, :, None], (1, 1, len(values), 3))
    assert video.to_uint8(frames)[0, 0, :, 0].tolist() == [0, 0, 0, 2, 2, 255, 255]


def test_poster_is_the_chosen_frame_losslessly(tmp_path: Path) -> None:
    clip = gradient_clip(frames=5)
    video.write_poster(clip, tmp_path / "first.png")
    video.write_poster(clip, tmp_path / "last.png", index=-1)

    for name, index in [("first.png", 0), ("last.png", 4)]:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), video.to_uint8(clip)[index])
    with pytest.raises(ValueError, match="index"):
        video.write_poster(clip, tmp_path / "none.png", index=5)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_preview_is_looping_animation_within_max_side(tmp_path: Path, fmt: str) -> None:
    clip = gradient_clip(frames=6, height=64, width=128)
    path = tmp_path / f"preview.{fmt}"

    size = video.write_preview(clip, path, fps=10, fmt=fmt, max_side=48)

    with Image.open(path) as image:
        assert image.format == fmt.upper()
        assert image.is_animated
        assert image.n_frames == 6
        assert image.size == size == (48, 24)
        assert image.info["loop"] == 0
        image.seek(1)
        image.load()
        assert image.info["duration"] == 100


def test_gif_preview_frames_keep_the_colours_of_the_clip(tmp_path: Path) -> None:
    """256 colours per frame lose some precision on smooth gradients (the hardest case for a palette),
    but every frame stays close to its source: Pillow's median cut over every pixel measured a mean
    error of 4.9 levels here; a coarse fixed-tree quantizer measured 7.1 (max 52)."""
    clip = gradient_clip(frames=8, height=72, width=128)
    path = tmp_path / "preview.gif"
    video.write_preview(clip, path, fps=7, max_side=512)

    with Image.open(path) as image:
        frames = [np.asarray(frame.convert("RGB")).astype(float) for frame in ImageSequence.Iterator(image)]
    source = video.to_uint8(clip).astype(float)
    assert len(frames) == len(source)
    for shown, wanted in zip(frames, source, strict=True):
        error = np.abs(shown - wanted)
        assert error.mean() <= 5.5 and error.max() <= 40


def test_preview_is_never_upscaled(tmp_path: Path) -> None:
    path = tmp_path / "preview.gif"
    assert video.write_preview(gradient_clip(frames=3), path, fps=7, max_side=512) == (96, 64)


def test_contact_sheet_tiles_clips_in_a_grid(tmp_path: Path) -> None:
    clips = [gradient_clip(frames=4, height=64, width=64) * s for s in (1.0, 0.5, 0.25)]

    info = video.write_contact_sheet_video(clips, tmp_path / "sheet.mp4", fps=7)

    assert (info.width, info.height, info.frame_count) == (128, 128, 4)
    sheet = video.contact_sheet(clips)
    assert sheet.dtype == np.uint8  # in 8 bits: a quarter of a float sheet
    np.testing.assert_array_equal(sheet[:, 64:, :64], video.to_uint8(clips[2]))
    assert not sheet[:, 64:, 64:].any()


def test_contact_sheet_pads_to_even_size(tmp_path: Path) -> None:
    clips = [gradient_clip(frames=3, height=21, width=30) for _ in range(3)]

    info = video.write_contact_sheet_video(clips, tmp_path / "sheet.mp4", fps=7, cols=3)

    assert (info.width, info.height) == (90, 22)
    assert video.contact_sheet(clips, cols=1).shape == (3, 64, 30, 3)


def test_contact_sheet_rejects_mismatched_clips() -> None:
    with pytest.raises(ValueError, match="clip 1"):
        video.contact_sheet([gradient_clip(frames=3), gradient_clip(frames=4)])
