"""The model registry: names → weights on disk, loaded once and kept warm under a memory budget.

A model is a local diffusers folder (`save_pretrained` layout) or a hub id + revision resolved from
the local hub cache only: loading never downloads. When weights are missing the error says what to
download and where it must go. The built-in `tiny` model is built from small configs on first use.
"""

import dataclasses
import gc
import hashlib
import json
import logging
import os
import platform
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from workers import toy
from workers.corpus import EmbeddingCorpus
from workers.errors import ModelUnavailableError
from workers.pipeline import SteerableVideoPipeline
from workers.preview import LatentRGB, fit_latent_rgb
from workers.settings import CUDA_ALLOC_CONF_ENV, EngineSettings, engine_defaults
from workers.text import TextEncoder, has_text_encoder, load_text_encoder

log = logging.getLogger(__name__)

DTypeName = Literal["float32", "float16", "bfloat16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

TINY = "tiny"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights are and how to run it."""

    name: str
    source: str  # a local folder, or a hub id such as stabilityai/stable-video-diffusion-img2vid-xt
    revision: str | None = None
    variant: str | None = None  # e.g. "fp16" for the hub's half-precision files
    dtype: DTypeName | None = None  # float16 on CUDA, float32 on CPU when unset
    device: str | None = None  # cuda when available, else cpu, when unset
    width: int = 1024
    height: int = 576
    num_frames: int | None = None  # the UNet's own when unset (14 for SVD, 25 for SVD-XT)
    # Live previews' latent → RGB map: 3 rows of C weights and a bias; fitted from the VAE at load if unset.
    preview_map: tuple[tuple[float, ...], ...] | None = None
    # Geodesic keyframe paths' reference corpus: a folder of images or a safetensors `embeddings` file.
    geodesic_corpus: str | None = None
    # Text directions' CLIP text tower sharing the image encoder's joint space (for SVD the ViT-H/14 one):
    # a local folder or a hub id in the local cache, holding a CLIPTextModelWithProjection and its
    # CLIPTokenizer (`workers.text`). Its projection width must equal the image embedding's.
    text_encoder: str | None = None

    def resolved_device(self) -> str:
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def resolved_dtype(self) -> torch.dtype:
        device = self.resolved_device()
        name = self.dtype or ("float16" if device.startswith("cuda") else "float32")
        if name not in DTYPES:
            raise ValueError(f"model {self.name!r}: `dtype` must be one of {sorted(DTYPES)}, got {name!r}")
        return DTYPES[name]


def builtin_specs(cache_dir: Path) -> dict[str, ModelSpec]:
    from workers.tiny import TINY_DEFAULTS
    from workers.toy import TOY, TOY_DEFAULTS, TOY_FOLDER

    return {
        TINY: ModelSpec(
            name=TINY,
            source=str(cache_dir / "tiny-svd"),
            text_encoder=str(cache_dir / "tiny-svd"),  # its text tower is kept beside the pipeline
            **TINY_DEFAULTS,  # type: ignore[arg-type]
        ),
        # The trained toy model, kept in the repository, with the tiny text tower beside it.
        TOY: ModelSpec(name=TOY, source=str(TOY_FOLDER), text_encoder=str(TOY_FOLDER), **TOY_DEFAULTS),  # type: ignore[arg-type]
        "svd": ModelSpec(name="svd", source="stabilityai/stable-video-diffusion-img2vid", variant="fp16"),
        "svd-xt": ModelSpec(name="svd-xt", source="stabilityai/stable-video-diffusion-img2vid-xt", variant="fp16"),
    }


@dataclass
class LoadedModel:
    """A warm pipeline and the facts the manifest records about it."""

    spec: ModelSpec
    pipeline: SteerableVideoPipeline
    folder: Path
    weight_hash: str
    bytes: int
    defaults: dict[str, int] = field(default_factory=dict)
    fast: "FastPath" = field(default_factory=lambda: FastPath())
    preview: LatentRGB | None = None  # the live previews' colour map
    text: TextEncoder | None = None  # text directions' CLIP text tower, when the spec names one

    @property
    def device(self) -> str:
        return str(self.pipeline._execution_device)

    @property
    def device_name(self) -> str:
        """The hardware, since a replay is exact only on the same kind of device."""
        device = self.pipeline._execution_device
        if device.type == "cuda":
            return torch.cuda.get_device_name(device)
        return f"{device.type} {platform.machine()}".strip()

    @property
    def dtype(self) -> torch.dtype:
        return self.pipeline.unet.dtype

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "source": self.spec.source,
            "revision": self.spec.revision,
            "variant": self.spec.variant,
            "weight_hash": self.weight_hash,
            "device": self.device,
            "device_name": self.device_name,
            "dtype": str(self.dtype).removeprefix("torch."),
            "fast_path": self.fast.describe(),
            "text_encoder": self.text.describe() if self.text is not None else None,
        }


def weight_hash(folder: Path) -> str:
    """sha256 over the relative paths and contents of every weight file in a pipeline folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin"} and p.is_file())
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        file_digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(file_digest.digest())
    return "sha256:" + digest.hexdigest()


def resolve_folder(spec: ModelSpec, hf_cache: str | None = None) -> Path:
    """The local folder holding the spec's weights; never downloads. `hf_cache` (the configured hub
    cache) only names where missing weights must go."""
    if spec.name == TINY and not Path(spec.source, "model_index.json").is_file():
        from workers.tiny import save_tiny_svd

        save_tiny_svd(Path(spec.source))
    elif spec.name == TINY and not has_text_encoder(Path(spec.source)):
        from workers.tiny import save_tiny_text

        save_tiny_text(Path(spec.source))  # a tiny model built before it had one: its weights stay
    local = Path(spec.source).expanduser()
    if spec.source == str(toy.TOY_FOLDER) and not (local / "model_index.json").is_file():
        raise ModelUnavailableError(
            spec.name, f"the toy model's weights are not in {local}; `make toy-model` trains them (about 21 minutes)"
        )
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise ModelUnavailableError(spec.name, f"{local} is not a diffusers pipeline folder (no model_index.json)")
        return local
    if local.is_absolute() or spec.source.startswith("."):
        raise ModelUnavailableError(spec.name, f"model folder {local} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec.source, revision=spec.revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        cache = hf_cache or "~/.cache/huggingface"
        revision = f" --revision {spec.revision}" if spec.revision else ""
        raise ModelUnavailableError(
            spec.name,
            f"weights for model {spec.name!r} ({spec.source}) are not in the local hub cache ({cache}). "
            f"Download them where there is network access with `hf download {spec.source}{revision}` "
            f"and copy the cache here, or save the pipeline with save_pretrained and register the folder "
            f'in VSTEER_MODELS as {{"{spec.name}": {{"source": "/path/to/folder"}}}}.',
        ) from exc


def quiet_libraries() -> None:
    """Keep diffusers' and transformers' loading bars and notices out of job output."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


SMALL_SIZE = 64


def _small_model_frames(folder: Path) -> int | None:
    """The UNet's frame count when a folder holds a small architecture (the tiny or the toy model: a
    UNet far below SVD's channel widths, made for 64x64); None otherwise."""
    try:
        config = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if max(config.get("block_out_channels", [320])) > 64:
        return None
    return int(config.get("num_frames", 6))


@dataclass(frozen=True)
class FastPath:
    """Speed settings applied at load. On CUDA `channels_last` and the warm-up are on by default; on
    the CPU everything is off, so CPU results stay bit-for-bit those of diffusers.

    Settings (`EngineSettings`): `VSTEER_FAST=0` turns the defaults off; `VSTEER_COMPILE=1` compiles the
    UNet and the VAE decoder with `torch.compile` (opt-in on any device: the first compile takes
    minutes, each new shape compiles again); `VSTEER_WARMUP=1|0` forces the warm-up run at load on or
    off; `VSTEER_CUDNN_AUTOTUNE=1` turns on cuDNN's autotune on CUDA (opt-in: it chooses kernels by
    timing them, so two worker processes may round differently and a manifest no longer replays bit
    for bit). SDPA attention is always on: the engine's processors wrap `AttnProcessor2_0`. bf16/fp16
    weights are the spec's `dtype` (float16 on CUDA when unset).
    """

    channels_last: bool = False
    compile: bool = False
    warm_up: bool = False
    autotune: bool = False

    @classmethod
    def for_device(cls, device: str, settings: EngineSettings | None = None) -> "FastPath":
        """The fast path `settings` ask for on `device` (the defaults when None)."""
        settings = settings or engine_defaults()
        cuda = device.startswith("cuda") and settings.fast
        warm_up = settings.warmup if settings.warmup is not None else cuda or settings.compile
        autotune = cuda and settings.cudnn_autotune
        return cls(channels_last=cuda, compile=settings.compile, warm_up=warm_up, autotune=autotune)

    def describe(self) -> dict[str, bool]:
        """What changes a job's numbers, for the manifest (the warm-up does not)."""
        return {"channels_last": self.channels_last, "compile": self.compile, "cudnn_autotune": self.autotune}

    def apply(self, pipeline: SteerableVideoPipeline, num_frames: int, height: int, width: int) -> None:
        """Change the loaded pipeline in place; the warm-up runs last, at the model's default shape."""
        if self.autotune:
            torch.backends.cudnn.benchmark = True  # process-wide
        if self.channels_last:
            # cuDNN's fastest convolutions on tensor cores read NHWC; the UNet and decoder are conv-heavy.
            channels_last_convs(pipeline.unet)
            channels_last_convs(pipeline.vae)
        if self.compile:
            # In place (`Module.compile`): the pipeline keeps its modules, processors and configs.
            pipeline.unet.compile()
            pipeline.vae.decoder.compile()
        if self.warm_up:
            pipeline.warm_up(num_frames, height, width)


def channels_last_convs(module: torch.nn.Module) -> int:
    """Put the weights of every 2-D convolution in `module` in channels_last; returns how many.

    Only `Conv2d`: `Module.to(memory_format=channels_last)` would also reach the temporal layers'
    5-D `Conv3d` weights, which have no channels_last layout, and fail."""
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        conv.to(memory_format=torch.channels_last)
    return len(convs)


def load_model(spec: ModelSpec, settings: EngineSettings | None = None) -> LoadedModel:
    """Load a spec's pipeline onto its device, in its dtype, with the fast path `settings` ask for on
    that device (the defaults when None)."""
    settings = settings or engine_defaults()
    quiet_libraries()
    # CUDA reads it once, when its allocator starts (the weights' move below, in a worker): growing
    # segments instead of fixed blocks, so that jobs of changing sizes do not fragment the card's
    # memory. `bench.gpu_svd` measures with the same setting.
    os.environ.setdefault(CUDA_ALLOC_CONF_ENV, settings.cuda_alloc_conf)
    folder = resolve_folder(spec, settings.hf_cache)
    device, dtype = spec.resolved_device(), spec.resolved_dtype()
    variant = spec.variant if spec.variant and any(folder.rglob(f"*.{spec.variant}.*")) else None
    pipeline = SteerableVideoPipeline.from_pretrained(folder, dtype=dtype, variant=variant)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    if spec.geodesic_corpus:
        pipeline.geodesic_corpus = EmbeddingCorpus(spec.geodesic_corpus)
    text = None
    if spec.text_encoder:
        image_width = int(pipeline.image_encoder.config.projection_dim)
        text = load_text_encoder(
            spec.name,
            spec.text_encoder,
            image_width=image_width,
            device=device,
            dtype=dtype,
            hf_cache=settings.hf_cache,
        )
    modules = [pipeline.unet, pipeline.vae, pipeline.image_encoder] + ([text.model] if text is not None else [])
    size = sum(p.numel() * p.element_size() for module in modules for p in module.parameters())
    defaults = {
        "width": spec.width,
        "height": spec.height,
        "num_frames": spec.num_frames or int(pipeline.unet.config.num_frames),
    }
    fast = FastPath.for_device(device, settings)
    fast.apply(pipeline, defaults["num_frames"], spec.height, spec.width)
    colour_map = preview_map(spec, pipeline)
    return LoadedModel(spec, pipeline, folder, weight_hash(folder), size, defaults, fast, colour_map, text)


def preview_map(spec: ModelSpec, pipeline: SteerableVideoPipeline) -> LatentRGB:
    """The spec's live-preview map, or one fitted now from the model's own VAE (milliseconds on a GPU)."""
    if spec.preview_map is not None:
        colour_map = LatentRGB.from_rows(spec.preview_map)
        if colour_map.channels != pipeline.unet.config.out_channels:
            raise ValueError(
                f"model {spec.name!r}: `preview_map` has {colour_map.channels} channel weights, "
                f"the UNet makes {pipeline.unet.config.out_channels} latent channels"
            )
        return colour_map
    return fit_latent_rgb(pipeline)


class ModelRegistry:
    """Named models, loaded on first use and kept warm; least recently used ones leave first
    when the budget would be exceeded. Models load with `settings`' fast path and hub cache (the
    defaults when None). Thread-safe."""

    def __init__(
        self,
        specs: dict[str, ModelSpec],
        default: str,
        memory_budget_bytes: int | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        if default not in specs:
            raise ValueError(f"default model {default!r} is not registered; known: {sorted(specs)}")
        self.specs = specs
        self.default = default
        self.budget = memory_budget_bytes
        self.settings = settings
        self._warm: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> "ModelRegistry":
        """The built-in models (`tiny` built under `cache_dir`) and `models`, with `default_model` and
        `model_memory_budget_gb`."""
        specs = builtin_specs(settings.cache_dir.expanduser())
        for name, fields in settings.models.items():
            try:
                if isinstance(fields.get("preview_map"), list):  # JSON lists; the spec keeps tuples
                    fields = {**fields, "preview_map": tuple(tuple(row) for row in fields["preview_map"])}
                specs[name] = ModelSpec(name=name, **fields)
            except TypeError as exc:
                raise ValueError(f"VSTEER_MODELS[{name!r}]: {exc}") from exc
        budget = settings.model_memory_budget_gb
        return cls(
            specs,
            default=settings.default_model,
            memory_budget_bytes=int(budget * 2**30) if budget is not None else None,
            settings=settings,
        )

    def names(self) -> list[str]:
        return sorted(self.specs)

    def warm_names(self) -> list[str]:
        return list(self._warm)

    def spec(self, name: str | None) -> ModelSpec:
        key = name or self.default
        if key in self.specs:
            return self.specs[key]
        raise ModelUnavailableError(key, f"unknown model {key!r}; registered: {', '.join(self.names())}")

    def register(self, name_or_path: str) -> str:
        """A registered name as is; a local pipeline folder (CLI `--model PATH`) is registered under
        its folder name, at 64x64 and its UNet's frame count when it is a small architecture (tiny, toy),
        with the text encoder it keeps beside it (`text_encoder/` and `tokenizer/`) if any."""
        written_as_path = any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.startswith(("~", "."))
        if name_or_path in self.specs and not written_as_path:
            return name_or_path
        path = Path(name_or_path).expanduser()
        if not path.is_dir():
            raise ModelUnavailableError(
                name_or_path,
                f"{name_or_path!r} is neither a registered model ({', '.join(self.names())}) nor a folder",
            )
        name = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().name) or "local"
        frames = _small_model_frames(path)
        text = str(path.resolve()) if has_text_encoder(path) else None
        spec = ModelSpec(name=name, source=str(path.resolve()), num_frames=frames, text_encoder=text)
        if frames is not None:
            spec = dataclasses.replace(spec, width=SMALL_SIZE, height=SMALL_SIZE)
        if name in self.specs and self.specs[name].source != spec.source:
            # A folder named like another model (a copy of `tiny` in /tmp/tiny) is that folder, not the
            # registered model: it gets a name of its own, stable for its path.
            name = f"{name}-{hashlib.sha256(spec.source.encode()).hexdigest()[:8]}"
            spec = dataclasses.replace(spec, name=name)
        self.specs[name] = spec
        return name

    def get(self, name: str | None = None) -> LoadedModel:
        spec = self.spec(name)
        with self._lock:
            if spec.name in self._warm and self._warm[spec.name].spec == spec:
                self._warm.move_to_end(spec.name)
                return self._warm[spec.name]
            loaded = load_model(spec, self.settings)
            if self.budget is not None and loaded.bytes > self.budget:
                raise ModelUnavailableError(
                    spec.name, f"model {spec.name!r} needs {loaded.bytes / 2**30:.2f} GiB, over the budget"
                )
            while self.budget is not None and self._warm and self._used() + loaded.bytes > self.budget:
                evicted, _ = self._warm.popitem(last=False)
                log.info("evicting model %s to stay under the memory budget", evicted)
                self._release()
            self._warm[spec.name] = loaded
            return loaded

    def warm(self, names: list[str]) -> None:
        for name in names:
            self.get(name)

    def _used(self) -> int:
        return sum(m.bytes for m in self._warm.values())

    @staticmethod
    def _release() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
