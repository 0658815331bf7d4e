"""The contract between clients, the HTTP service and the workers: pydantic models only."""

from api_schemas.job import (
    Direction,
    DirectionSource,
    Generation,
    Guidance,
    GuidanceShape,
    Interpolation,
    JobRequest,
    Keyframe,
    Output,
    Ramp,
    Reference,
    Style,
    Sweep,
    SweepTarget,
    Variation,
    Webhook,
)

__all__ = [
    "Direction",
    "DirectionSource",
    "Generation",
    "Guidance",
    "GuidanceShape",
    "Interpolation",
    "JobRequest",
    "Keyframe",
    "Output",
    "Ramp",
    "Reference",
    "Style",
    "Sweep",
    "SweepTarget",
    "Variation",
    "Webhook",
]
