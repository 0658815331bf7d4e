"""A supervised direction's file: `direction` plus its attribute predictor (`predictor.*` tensors and
metadata), rebuilt without pickle; files of the other methods keep their one tensor."""

import json
import struct

import pytest
import torch
from safetensors.torch import load, save

from steering.discovery import fit_attribute_predictor, predictor_direction
from workers.direction_predictor import predictor_entries
from workers.directions import DirectionResolver, direction_bytes, read_direction, read_direction_file
from workers.errors import JobInputError

D = 8


@pytest.fixture(scope="module")
def fitted():
    x = torch.randn(60, D, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] ** 2 + torch.sin(2 * x[:, 1])).double()  # nonlinear: the gradient depends on z
    return fit_attribute_predictor(x, y, hidden=16, epochs=80, seed=0), x


def header(data: bytes) -> dict:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])


def test_a_supervised_file_holds_the_direction_and_rebuilds_the_predictor(fitted):
    fit, x = fitted
    summary = predictor_direction(fit, x.mean(dim=0))
    data = direction_bytes(summary, fit.model)

    meta = header(data)["__metadata__"]
    assert meta["predictor.architecture"] == "attribute_mlp" and meta["predictor.version"] == "1"
    assert (meta["predictor.dimension"], meta["predictor.hidden"]) == (str(D), "16")
    assert set(load(data)) == {
        "direction",
        *(f"predictor.{n}" for n in ("center", "scale", "hidden.weight", "hidden.bias", "out.weight", "out.bias")),
    }
    vector, predictor = read_direction_file(data, "directions[0].source.id")
    assert torch.equal(vector, summary)
    assert predictor is not None
    # The rebuilt predictor scores and differentiates as the trained one does, at points it never saw.
    z = torch.randn(5, D, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        assert torch.allclose(predictor(z), fit(z), atol=1e-6)
    assert torch.allclose(predictor_direction(predictor, z), predictor_direction(fit, z), atol=1e-6)
    assert torch.equal(read_direction(data, "x"), summary)  # readers of the vector alone still work


def test_other_files_keep_their_one_tensor_and_no_predictor():
    vector = torch.tensor([3.0, 4.0])
    data = direction_bytes(vector)
    assert data == save({"direction": vector})  # byte for byte what every earlier version wrote
    assert "__metadata__" not in header(data)
    assert read_direction_file(data, "x")[1] is None
    resolver = DirectionResolver(fetch=lambda _: data)
    from api_schemas import DirectionSource

    source = DirectionSource(id="dir_plain")
    assert resolver.predictor(source, "directions[0].source") is None
    assert resolver.predictor(DirectionSource(vector=[1.0, 0.0]), "directions[0].source") is None


def corrupt(fit, summary, *, tensors=None, drop=None, metadata=None) -> bytes:
    entries, meta = predictor_entries(fit.model)
    entries = {"direction": summary, **entries, **(tensors or {})}
    if drop:
        del entries[drop]
    return save(entries, metadata={**meta, **(metadata or {})} if metadata != {} else None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "predictor.out.bias"}, "missing ['out.bias']"),
        ({"tensors": {"predictor.extra": torch.zeros(1)}}, "extra ['extra']"),
        ({"tensors": {"predictor.scale": torch.tensor(0.0)}}, "`scale` must be > 0"),
        ({"tensors": {"predictor.center": torch.full((D,), float("nan"))}}, "`center` must be floating point"),
        ({"tensors": {"predictor.hidden.bias": torch.zeros(3)}}, "`hidden.bias` must be (16,)"),
        ({"tensors": {"predictor.hidden.weight": torch.zeros(16, D, dtype=torch.int32)}}, "floating point"),
        ({"metadata": {}}, "`predictor.architecture` must be 'attribute_mlp'"),
        ({"metadata": {"predictor.architecture": "transformer"}}, "got 'transformer'"),
        ({"metadata": {"predictor.version": "2"}}, "`predictor.version` must be '1'"),
        ({"metadata": {"predictor.hidden": "15"}}, "its metadata gives dimension, hidden"),
    ],
    ids=["missing", "extra", "scale", "nan", "shape", "dtype", "no-metadata", "architecture", "version", "sizes"],
)
def test_a_malformed_predictor_is_refused_naming_the_field(fitted, change, message):
    fit, x = fitted
    data = corrupt(fit, predictor_direction(fit, x.mean(dim=0)), **change)
    with pytest.raises(JobInputError) as raised:
        read_direction_file(data, "directions[2].source.id")
    assert raised.value.field == "directions[2].source.id"
    assert "predictor is malformed" in raised.value.detail and message in raised.value.detail


def test_metadata_naming_a_predictor_without_its_tensors_is_refused(fitted):
    _, meta = predictor_entries(fitted[0].model)
    data = save({"direction": torch.ones(D)}, metadata=meta)
    with pytest.raises(JobInputError, match="predictor is malformed: a predictor has exactly"):
        read_direction_file(data, "d")


def test_a_predictor_of_another_width_than_its_direction_is_refused(fitted):
    fit, _ = fitted
    entries, meta = predictor_entries(fit.model)
    data = save({"direction": torch.ones(D + 1), **entries}, metadata=meta)
    with pytest.raises(JobInputError, match=f"scores {D}-d embeddings but the direction has {D + 1} entries"):
        read_direction_file(data, "d")
