"""The toy SVD: SVD's own architecture at 64x64, trained on synthetic video made by code.

`data` makes the clips, `train` trains the model (`vsteer models train-toy`), `measures` reads what a
clip shows (where the shape is, what colour it is). The trained weights are kept in the repository
(`models/toy`, float16, about 11 MB) and registered as the model `toy`, the local stack's default.
Importing this package loads nothing heavy.
"""

import os
from pathlib import Path

TOY = "toy"
# The checkout's `models/toy`; an installed package (the worker image) is told where the folder is.
TOY_FOLDER = Path(os.environ.get("VSTEER_TOY_FOLDER") or Path(__file__).resolve().parents[2] / "models" / "toy")
TOY_DEFAULTS = {"width": 64, "height": 64, "num_frames": 8}


def toy_available(folder: Path | None = None) -> bool:
    """Whether the trained toy model's folder (`TOY_FOLDER` unless given) is there: a checkout has it,
    `make toy-model` remakes it."""
    return ((folder or TOY_FOLDER) / "model_index.json").is_file()
