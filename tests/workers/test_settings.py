"""The engine's settings: every variable a worker or `vsteer run` reads, read once, refused when wrong."""

from pathlib import Path

import pytest

from workers.settings import EngineSettings, WorkerSettings, engine_defaults

ENGINE_VARIABLES = [
    "VSTEER_MODELS",
    "VSTEER_DEFAULT_MODEL",
    "VSTEER_MODEL_MEMORY_BUDGET_GB",
    "VSTEER_CACHE_DIR",
    "VSTEER_FAST",
    "VSTEER_COMPILE",
    "VSTEER_WARMUP",
    "VSTEER_CUDNN_AUTOTUNE",
    "VSTEER_OUTPUT_THREADS",
    "VSTEER_HOST_MEMORY_BYTES",
    "HF_HUB_CACHE",
    "HF_HOME",
    "PYTORCH_CUDA_ALLOC_CONF",
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENGINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_worker_reads_every_engine_variable(env: pytest.MonkeyPatch) -> None:
    values = {
        "VSTEER_MODELS": '{"svd-xt": {"source": "/models/svd-xt", "dtype": "float16"}, "mine": "/models/mine"}',
        "VSTEER_DEFAULT_MODEL": "svd-xt",
        "VSTEER_MODEL_MEMORY_BUDGET_GB": "12.5",
        "VSTEER_CACHE_DIR": "/models/vsteer",
        "VSTEER_FAST": "0",
        "VSTEER_COMPILE": "1",
        "VSTEER_WARMUP": "0",
        "VSTEER_CUDNN_AUTOTUNE": "1",
        "VSTEER_OUTPUT_THREADS": "3",
        "VSTEER_HOST_MEMORY_BYTES": "1234",
        "HF_HOME": "/models/huggingface",
        "PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128",
    }
    for name, value in values.items():
        env.setenv(name, value)

    s = WorkerSettings()

    assert s.models == {
        "svd-xt": {"source": "/models/svd-xt", "dtype": "float16"},
        "mine": {"source": "/models/mine"},
    }
    assert (s.default_model, s.model_memory_budget_gb, s.cache_dir) == ("svd-xt", 12.5, Path("/models/vsteer"))
    assert (s.fast, s.compile, s.warmup, s.cudnn_autotune) == (False, True, False, True)
    assert (s.output_threads, s.host_memory_bytes) == (3, 1234)
    assert (s.hf_cache, s.cuda_alloc_conf) == ("/models/huggingface", "max_split_size_mb:128")
    assert s.queues == ["gpu.svd-xt"]


def test_unset_and_empty_variables_are_the_defaults(env: pytest.MonkeyPatch) -> None:
    unset = EngineSettings()
    # What compose passes for `${VSTEER_MODEL_MEMORY_BUDGET_GB:-}` (a name and a value that are text
    # either way, the default model and the allocator configuration, are taken as they are).
    for name in set(ENGINE_VARIABLES) - {"VSTEER_DEFAULT_MODEL", "PYTORCH_CUDA_ALLOC_CONF"}:
        env.setenv(name, "")
    empty = EngineSettings()

    assert unset.model_dump() == empty.model_dump() == engine_defaults().model_dump()
    assert (unset.models, unset.default_model, unset.model_memory_budget_gb) == ({}, "tiny", None)
    assert (unset.fast, unset.compile, unset.warmup, unset.cudnn_autotune) == (True, False, None, False)
    assert (unset.output_threads, unset.host_memory_bytes, unset.hf_cache) == (None, None, None)


def test_the_hub_cache_is_hf_hub_cache_else_hf_home(env: pytest.MonkeyPatch) -> None:
    env.setenv("HF_HOME", "/home-cache")
    assert EngineSettings().hf_cache == "/home-cache"
    env.setenv("HF_HUB_CACHE", "/hub-cache")
    assert EngineSettings().hf_cache == "/hub-cache"


def test_the_defaults_do_not_read_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("VSTEER_OUTPUT_THREADS", "0")
    env.setenv("VSTEER_COMPILE", "1")
    defaults = engine_defaults()
    assert (defaults.output_threads, defaults.compile) == (None, False)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VSTEER_OUTPUT_THREADS", "0", "VSTEER_OUTPUT_THREADS must be a positive integer, got '0'"),
        ("VSTEER_HOST_MEMORY_BYTES", "1e9", "VSTEER_HOST_MEMORY_BYTES must be a number of bytes, got '1e9'"),
        ("VSTEER_MODELS", "{not json", "VSTEER_MODELS is not valid JSON"),
        ("VSTEER_MODELS", '["tiny"]', "VSTEER_MODELS must be a JSON object of name → spec"),
        ("VSTEER_MODEL_MEMORY_BUDGET_GB", "lots", "model_memory_budget_gb"),
        ("VSTEER_COMPILE", "maybe", "compile"),
    ],
)
def test_a_bad_variable_stops_the_worker_naming_it(env: pytest.MonkeyPatch, name: str, value: str, message: str):
    env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        WorkerSettings()


def test_the_registry_is_built_from_the_settings(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from workers.models import ModelRegistry

    env.setenv("VSTEER_MODELS", '{"mine": {"source": "/models/mine", "width": 512}}')
    env.setenv("VSTEER_MODEL_MEMORY_BUDGET_GB", "2")
    env.setenv("VSTEER_CACHE_DIR", str(tmp_path))
    settings = EngineSettings()

    registry = ModelRegistry.from_settings(settings)

    assert registry.names() == ["mine", "svd", "svd-xt", "tiny", "toy"]
    assert (registry.specs["mine"].source, registry.specs["mine"].width) == ("/models/mine", 512)
    assert registry.specs["tiny"].source == str(tmp_path / "tiny-svd")
    assert (registry.default, registry.budget, registry.settings) == ("tiny", 2 * 2**30, settings)
    with pytest.raises(ValueError, match=r"VSTEER_MODELS\['odd'\]"):
        ModelRegistry.from_settings(EngineSettings(models={"odd": {"source": "/x", "colour": "red"}}))
