"""Settings of the GPU worker deployable, read once from `VSTEER_*` environment variables.

Job state and webhook settings (`VSTEER_REDIS_URL`, `VSTEER_ENVIRONMENT`, `VSTEER_WEBHOOK_*`) come
from `webhooks.settings.WebhookSettings`. What the in-process engine reads (models, the fast path, a
job's output threads and host memory) comes from `EngineSettings`, which `vsteer run` builds alone.
This object holds the rest and the list of models this worker serves, which decides its queues.
Nothing else in a worker reads the environment: each part is given the values it needs.
"""

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobstate.queues import queue_for
from storage.settings import StorageSettings
from webhooks.settings import WebhookSettings

CUDA_ALLOC_CONF_ENV = "PYTORCH_CUDA_ALLOC_CONF"
CUDA_ALLOC_CONF = "expandable_segments:True"


class EngineSettings(BaseSettings):
    """What the in-process engine reads: the models it may load, its fast path, and each job's output
    threads and host memory. An empty variable is an unset one (compose passes unset ones through
    as empty strings)."""

    model_config = SettingsConfigDict(env_prefix="VSTEER_", extra="ignore")

    models: Annotated[dict[str, dict[str, Any]], NoDecode] = Field(
        default_factory=dict,
        description="Models besides the built-in ones, JSON: name → a folder path or `ModelSpec` fields "
        '(`{"svd-xt": {"source": "/models/svd-xt", "dtype": "float16"}}`).',
    )
    default_model: str = Field("tiny", description="Model of jobs that name none.")
    model_memory_budget_gb: float | None = Field(
        None, ge=0, description="GiB of weights kept warm (least recently used leave first); unbounded if unset."
    )
    cache_dir: Path = Field(Path("~/.cache/vsteer"), description="Where the built-in `tiny` model is built.")
    hf_cache: str | None = Field(
        None,
        validation_alias=AliasChoices("HF_HUB_CACHE", "HF_HOME"),
        description="The Hugging Face cache hub ids load from (`HF_HUB_CACHE`, else `HF_HOME`); named when "
        "weights are missing (the hub library reads the same variables).",
    )
    fast: bool = Field(True, description="The CUDA fast path (channels_last, warm-up); `0` turns it off.")
    compile: bool = Field(
        False, description="`torch.compile` the UNet and the VAE decoder, on any device (the first compile is slow)."
    )
    warmup: bool | None = Field(
        None, description="A warm-up run at load; on with the CUDA fast path or `compile` if unset."
    )
    cudnn_autotune: bool = Field(
        False, description="cuDNN's autotune on CUDA: faster convolutions, but manifests no longer replay bit for bit."
    )
    previews: int = Field(
        10,
        ge=0,
        le=100,
        description="Live previews per job: a small JPEG strip of the denoised estimate every few denoising "
        "steps, published as an SSE `preview` event (0 turns them off).",
    )
    output_threads: int | None = Field(
        None, description="Threads for a job's outputs; the CPUs this process may use, at most 4, if unset."
    )
    host_memory_bytes: int | None = Field(
        None, description="Host memory a job may plan on; MemAvailable within the cgroup's limit if unset."
    )
    cuda_alloc_conf: str = Field(
        CUDA_ALLOC_CONF,
        validation_alias=CUDA_ALLOC_CONF_ENV,
        description="CUDA's allocator configuration, put in the environment (unless set there) before a model "
        "reaches the card: growing segments, so that jobs of changing sizes do not fragment its memory.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"VSTEER_MODELS is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ValueError("VSTEER_MODELS must be a JSON object of name → spec")
        return {name: {"source": spec} if isinstance(spec, str) else spec for name, spec in value.items()}

    @field_validator("output_threads", mode="before")
    @classmethod
    def _parse_threads(cls, value: object) -> int | None:
        return _count(value, "VSTEER_OUTPUT_THREADS must be a positive integer", minimum=1)

    @field_validator("host_memory_bytes", mode="before")
    @classmethod
    def _parse_host_memory(cls, value: object) -> int | None:
        return _count(value, "VSTEER_HOST_MEMORY_BYTES must be a number of bytes", minimum=0)

    @field_validator(
        "model_memory_budget_gb",
        "cache_dir",
        "hf_cache",
        "fast",
        "compile",
        "warmup",
        "cudnn_autotune",
        "previews",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            assert info.field_name is not None
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return value


def _count(value: object, rule: str, minimum: int) -> int | None:
    """A whole number written in ASCII digits: "1.5", "1e9", "-2" or "²" are refused, not rounded."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise ValueError(f"{rule}, got {text!r}")
    return int(text)


def engine_defaults() -> EngineSettings:
    """The engine's settings with every variable unset, without reading the environment: for a registry
    or a job built in code (tests, benchmarks) rather than by a deployable."""
    return EngineSettings.model_construct()


class WorkerSettings(EngineSettings, WebhookSettings, StorageSettings):
    """Variable names follow the API's settings (`service.settings`), so one environment serves both."""

    allow_remote_images: bool = Field(
        False,
        description="Fetch images that jobs name by http(s) URL, behind the webhooks' SSRF guard (the API's "
        "setting of the same name accepts them).",
    )
    worker_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models this worker serves, comma separated; it consumes `gpu.<model>` for each "
        "and loads them at start. `default_model` if unset.",
    )

    # Delivery: Redis re-delivers a message not acknowledged within the visibility timeout, so it must
    # exceed the longest wait in the queue plus the longest job, or a long job runs twice.
    job_time_limit_s: int = Field(
        3600,
        ge=10,
        description="Longest a job may run, from its start on this worker; past it the job stops at its next "
        "denoising step and fails with problem type `time-limit`.",
    )
    max_queue_wait_s: int = Field(6 * 3600, ge=0, description="Longest a job may wait in its queue.")
    visibility_timeout_s: int | None = Field(None, description="Broker visibility timeout; derived if unset.")
    redelivery_check_s: float | None = Field(
        None,
        gt=0,
        description="How often a worker looks for messages whose visibility timeout has passed (a dead worker's "
        "jobs) and puts them back in their queue; unset: kombu's default (every 100 s, and when a worker starts).",
    )
    storage_retry_budget_s: float = Field(
        120.0, ge=0, description="How long uploads are retried (with backoff) while storage is unreachable."
    )
    state_retry_budget_s: float = Field(
        60.0, ge=0, description="How long a job's final state write is retried while Redis is unreachable."
    )

    work_dir: Path | None = Field(None, description="Where jobs write before upload (system temp if unset).")
    heartbeat_file: Path | None = Field(
        None,
        description="A file whose modification time the worker's heartbeat sets on every beat, once its models "
        "are loaded; a liveness probe reads its age (`python -m workers.liveness FILE`). None: no file.",
    )

    @field_validator("worker_models", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "WorkerSettings":
        if not self.worker_models:
            self.worker_models = [self.default_model]
        floor = self.job_time_limit_s + self.max_queue_wait_s
        if self.visibility_timeout_s is None:
            self.visibility_timeout_s = floor + 600
        elif self.visibility_timeout_s <= floor:
            raise ValueError(
                f"VSTEER_VISIBILITY_TIMEOUT_S must exceed job_time_limit_s + max_queue_wait_s = {floor}, "
                f"got {self.visibility_timeout_s}: a job would be delivered twice"
            )
        for problem in self.storage_problems(production=self.environment == "production"):
            raise ValueError(problem)
        return self

    @property
    def queues(self) -> list[str]:
        return [queue_for(m) for m in self.worker_models]


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    return WorkerSettings()
