"""A supervised direction's attribute predictor, stored in the direction's own safetensors file.

A supervised direction is a field, not a vector: at z it is ∇score(z)/‖∇score(z)‖ (DESIGN.md §5), so a
job needs the predictor to evaluate it at each frame's embedding. The file holds, without pickle:

- `direction` (D,) float32: the normalised gradient at the examples' mean, the summary that listings,
  uploads and every use of a fixed vector read (latent jobs, old readers);
- `predictor.<name>` float32, one tensor per entry of the predictor's state dict
  (`steering.discovery.PREDICTOR_PARAMETERS`): `predictor.center` (D,), `predictor.scale` (),
  `predictor.hidden.weight` (H, D), `predictor.hidden.bias` (H,), `predictor.out.weight` (1, H),
  `predictor.out.bias` (1,);
- in the safetensors `__metadata__` (strings only): `predictor.architecture` = `attribute_mlp`,
  `predictor.version` = `1`, `predictor.dimension` = D, `predictor.hidden` = H,
  `predictor.activation` = `tanh` and `predictor.formula`, the score the tensors define.

Files of the other methods hold the one `direction` tensor and no metadata, as they always have.
"""

import json
import struct

import torch
from torch import nn

from steering.discovery import PREDICTOR_PARAMETERS, attribute_predictor
from workers.errors import JobInputError

PREFIX = "predictor."
ARCHITECTURE = "attribute_mlp"
VERSION = "1"
FORMULA = "score(z) = out.weight · tanh(hidden.weight · (z − center) / scale + hidden.bias) + out.bias"


def predictor_entries(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (`predictor.<name>`, float32, CPU) and metadata that store `model`, a predictor of
    `steering.discovery.fit_attribute_predictor` (its `PredictorFit.model`)."""
    state = model.state_dict()
    if set(state) != set(PREDICTOR_PARAMETERS):
        raise ValueError(f"not an attribute predictor: its state has {sorted(state)}")
    tensors = {PREFIX + name: state[name].detach().to(device="cpu", dtype=torch.float32).contiguous() for name in state}
    hidden, dimension = state["hidden.weight"].shape
    metadata = {
        "predictor.architecture": ARCHITECTURE,
        "predictor.version": VERSION,
        "predictor.dimension": str(dimension),
        "predictor.hidden": str(hidden),
        "predictor.activation": "tanh",
        "predictor.formula": FORMULA,
    }
    return tensors, metadata


def file_metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's `__metadata__` ({} when there is none); `data` has been read as
    safetensors already, so its header is known to be JSON."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def load_predictor(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str], dimension: int, where: str
) -> nn.Module | None:
    """The predictor a direction file stores (None when it stores none), rebuilt from its tensors and
    checked against its metadata and the direction's `dimension`; a malformed one is a `JobInputError`
    naming `where`."""
    state = {name[len(PREFIX) :]: value for name, value in tensors.items() if name.startswith(PREFIX)}
    declared = metadata.get("predictor.architecture")
    if not state and declared is None:
        return None

    def malformed(why: str) -> JobInputError:
        return JobInputError(where, f"the direction file's predictor is malformed: {why}")

    if declared != ARCHITECTURE:
        raise malformed(f"`predictor.architecture` must be {ARCHITECTURE!r} beside its tensors, got {declared!r}")
    if metadata.get("predictor.version") != VERSION:
        raise malformed(f"`predictor.version` must be {VERSION!r}, got {metadata.get('predictor.version')!r}")
    try:
        model = attribute_predictor(state)
    except ValueError as exc:
        raise malformed(str(exc)) from exc
    hidden, width = model.state_dict()["hidden.weight"].shape
    declared_sizes = (metadata.get("predictor.dimension"), metadata.get("predictor.hidden"))
    if declared_sizes != (str(width), str(hidden)):
        raise malformed(f"its metadata gives dimension, hidden = {declared_sizes}, its tensors ({width}, {hidden})")
    if width != dimension:
        raise malformed(f"it scores {width}-d embeddings but the direction has {dimension} entries")
    return model
