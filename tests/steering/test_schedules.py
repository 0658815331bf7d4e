"""Strength ramps, step and frame windows, per-frame guidance scales."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.schedules import constant, frame_window, guidance_scales, ramp, step_window

values = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False)
counts = st.integers(min_value=1, max_value=64)
fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(start=values, end=values, n=counts, curve=st.sampled_from(["linear", "cosine"]))
def test_ramp_hits_its_ends_exactly(start: float, end: float, n: int, curve: str) -> None:
    out = ramp(start, end, n, curve)  # type: ignore[arg-type]
    assert out.shape == (n,) and out.dtype == torch.float32
    assert float(out[0]) == float(torch.tensor(start, dtype=torch.float32))
    if n > 1:
        assert float(out[-1]) == float(torch.tensor(end, dtype=torch.float32))
        # monotone from start to end
        diffs = (out[1:] - out[:-1]) * (1.0 if end >= start else -1.0)
        assert bool((diffs >= 0).all())


@settings(max_examples=30, deadline=None)
@given(start=values, end=values, n=st.integers(min_value=2, max_value=64))
def test_ramp_curves_follow_their_formulas(start: float, end: float, n: int) -> None:
    x = [i / (n - 1) for i in range(n)]
    linear = [start + (end - start) * xi for xi in x]
    cosine = [start + (end - start) * (1 - math.cos(math.pi * xi)) / 2 for xi in x]
    tol = 1e-5 * (1.0 + abs(start) + abs(end))
    torch.testing.assert_close(ramp(start, end, n), torch.tensor(linear, dtype=torch.float32), atol=tol, rtol=0)
    torch.testing.assert_close(
        ramp(start, end, n, "cosine"), torch.tensor(cosine, dtype=torch.float32), atol=tol, rtol=0
    )


def test_ramp_single_value_and_cosine_midpoint() -> None:
    assert ramp(0.3, 2.0, 1).tolist() == [pytest.approx(0.3)]
    assert float(ramp(0.0, 2.0, 5, "cosine")[2]) == pytest.approx(1.0)
    # the cosine curve eases in: slower than linear near the start
    assert float(ramp(0.0, 1.0, 5, "cosine")[1]) < float(ramp(0.0, 1.0, 5)[1])
    with pytest.raises(ValueError, match="curve"):
        ramp(0.0, 1.0, 5, "quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`n`"):
        ramp(0.0, 1.0, 0)


def test_constant() -> None:
    assert constant(1.5, 4).tolist() == [1.5] * 4
    assert constant(1.5, 4).dtype == torch.float32


@settings(max_examples=60, deadline=None)
@given(lo=values, hi=values, n=counts)
def test_linear_guidance_is_exactly_torch_linspace(lo: float, hi: float, n: int) -> None:
    assert torch.equal(guidance_scales(lo, hi, n, "linear"), torch.linspace(lo, hi, n))


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(min_value=0.0, max_value=10.0), span=st.floats(min_value=0.0, max_value=10.0), n=counts)
def test_triangle_guidance_is_symmetric_with_its_peak_in_the_middle(lo: float, span: float, n: int) -> None:
    hi = lo + span
    out = guidance_scales(lo, hi, n, "triangle")
    assert out.shape == (n,)
    assert torch.equal(out, out.flip(0))
    lo32, hi32 = float(torch.tensor(lo, dtype=torch.float32)), float(torch.tensor(hi, dtype=torch.float32))
    assert float(out[0]) == lo32
    assert float(out.max()) == float(out[(n - 1) // 2])
    assert bool((out >= lo32).all()) and bool((out <= hi32).all())
    if n % 2 == 1 and n > 1:
        assert float(out[n // 2]) == hi32
    # rising in the first half
    half = out[: (n + 1) // 2]
    assert bool((half[1:] >= half[:-1]).all())


def test_triangle_and_constant_values() -> None:
    torch.testing.assert_close(guidance_scales(1.0, 3.0, 5, "triangle"), torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0]))
    torch.testing.assert_close(guidance_scales(1.0, 3.0, 4, "constant"), torch.full((4,), 3.0))
    # one frame sits at x = 0, an end of the triangle
    assert guidance_scales(1.0, 3.0, 1, "triangle").tolist() == [1.0]
    with pytest.raises(ValueError, match="shape"):
        guidance_scales(1.0, 3.0, 4, "sawtooth")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(num=counts, a=fractions, b=fractions, c=fractions)
def test_step_windows(num: int, a: float, b: float, c: float) -> None:
    a, b, c = sorted((a, b, c))
    assert bool(step_window(num, 0.0, 1.0).all())
    assert not bool(step_window(num, a, a).any())
    # adjacent windows partition the steps of their union
    first, second, union = step_window(num, a, b), step_window(num, b, c), step_window(num, a, c)
    assert not bool((first & second).any())
    assert torch.equal(first | second, union)
    assert step_window(num, a, b).dtype == torch.bool


def test_step_window_rule() -> None:
    # step i is in when a <= i/10 < b
    assert step_window(10, 0.0, 0.5).tolist() == [True] * 5 + [False] * 5
    assert step_window(10, 0.5, 1.0).tolist() == [False] * 5 + [True] * 5
    assert step_window(4, 0.2, 0.3).tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="window"):
        step_window(10, 0.6, 0.4)
    with pytest.raises(ValueError, match="window"):
        step_window(10, -0.1, 0.4)


@settings(max_examples=40, deadline=None)
@given(num=counts, a=fractions, b=fractions)
def test_frame_windows(num: int, a: float, b: float) -> None:
    a, b = sorted((a, b))
    assert bool(frame_window(num, 0.0, 1.0).all())
    window = frame_window(num, a, b)
    positions = [f / (num - 1) if num > 1 else 0.0 for f in range(num)]
    assert window.tolist() == [a <= x <= b for x in positions]


def test_frame_window_ends_are_inclusive() -> None:
    assert frame_window(5, 0.25, 0.75).tolist() == [False, True, True, True, False]
    assert frame_window(5, 0.5, 0.5).tolist() == [False, False, True, False, False]
    assert frame_window(5, 0.0, 0.0).tolist() == [True, False, False, False, False]


def test_strength_table_is_a_number_or_a_ramp_over_frames_or_steps():
    from steering.schedules import strength_table

    assert torch.equal(strength_table(2.0, 3, 4), torch.full((3, 4), 2.0))
    over_frames = strength_table(0.0, 3, 5, ramp_to=1.0, over="frames")
    assert over_frames[0].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and torch.equal(over_frames[0], over_frames[2])
    over_steps = strength_table(0.0, 3, 2, ramp_to=2.0, over="steps", curve="linear")
    assert over_steps[:, 0].tolist() == [0.0, 1.0, 2.0] and torch.equal(over_steps[:, 0], over_steps[:, 1])
