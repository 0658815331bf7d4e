"""Steering operations, one module each, listed once in the order the engine applies them.

The order matters where operations meet: a sweep lays out the clips (and moves the conditioning
image of an image sweep) before anything else; keyframes give the per-frame conditioning that
embedding directions then move; references and the negative image are added to the tokens after
that; latent directions act on the latents at each step before style statistics are matched. A video
edit says where denoising starts (the clip's latents, re-noised) once the rest have shaped the
conditioning its inversion runs under.

Bidirectional sampling comes after the operations that shape the conditioning: its time-flipped
pass copies what they made.
"""

from workers.ops.base import ClipState, FrameConditioning, JobContext, LatentSteering, Operation, Start, StepAction
from workers.ops.bidirectional import BidirectionalOp
from workers.ops.directions import DirectionsOp
from workers.ops.keyframes import KeyframesOp
from workers.ops.negative_image import NegativeImageOp
from workers.ops.references import ReferencesOp
from workers.ops.style import StyleOp
from workers.ops.sweep import SweepOp
from workers.ops.variation import VariationOp
from workers.ops.video import VideoOp

OPERATIONS: tuple[type[Operation], ...] = (
    SweepOp,
    VariationOp,
    KeyframesOp,
    DirectionsOp,
    ReferencesOp,
    NegativeImageOp,
    StyleOp,
    BidirectionalOp,
    VideoOp,
)


def operations_for(ctx: JobContext) -> list[Operation]:
    """The operations this job uses, in registry order."""
    return [op for kind in OPERATIONS if (op := kind.for_job(ctx)) is not None]


__all__ = [
    "OPERATIONS",
    "ClipState",
    "FrameConditioning",
    "JobContext",
    "LatentSteering",
    "Operation",
    "Start",
    "StepAction",
    "operations_for",
]
