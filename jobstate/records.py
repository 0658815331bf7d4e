"""What job state holds: job and asset records, stored results, and how a record becomes a resource.

A record is what Redis keeps; a resource (`api_schemas.JobResource`) is what a client sees. The
difference is small but real: a stored result names storage keys, and a resource carries presigned
URLs computed when it is answered, so their expiry is always fresh.
"""

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api_schemas import Artifact, JobRequest, JobResource, JobResult, JobStatus, LivePreview, Problem, Progress
from api_schemas.artifacts import ARTIFACTS, LISTED_ARTIFACTS, SINGLE_ARTIFACTS, split_artifact_name
from api_schemas.directions import FIT_KIND, DirectionFitRequest, DirectionFitResource, DirectionResource, FitUrls
from api_schemas.resources import JobUrls
from jobstate.redis_keys import SHARDS, tenant_shard

JOB_ID_PATTERN = r"^job_[0-9a-f]{28}$"
ASSET_ID_PATTERN = r"^ast_[0-9a-f]{28}$"
ANCHOR_ID_PATTERN = r"^anc_[0-9a-f]{28}$"


def _time_ordered_id(prefix: str, now: float | None = None) -> str:
    """`<prefix>_` + 12 hex digits of milliseconds + 16 random hex digits: sorts by creation time."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{ms:012x}{secrets.token_hex(8)}"


def new_job_id(tenant: str, now: float | None = None) -> str:
    """A new id for one of `tenant`'s jobs: its last hex digit names the tenant's shard of job state
    (`redis_keys.job_shard`), so the job's keys and the tenant's share a hash tag."""
    ident = _time_ordered_id("job", now)
    digit = tenant_shard(tenant) + SHARDS * secrets.randbelow(16 // SHARDS)
    return f"{ident[:-1]}{digit:x}"


def new_asset_id(now: float | None = None) -> str:
    return _time_ordered_id("ast", now)


def new_anchor_id(now: float | None = None) -> str:
    return _time_ordered_id("anc", now)


class StoredArtifact(BaseModel):
    """One result file as stored: its storage key, not a URL."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Storage key, e.g. `jobs/<tenant>/<job_id>/video.mp4`.")
    content_type: str
    bytes: int = Field(ge=0)
    sha256: str | None = None


class StoredResult(BaseModel):
    """What a worker records when a job succeeds; mirrors `api_schemas.JobResult` with keys for URLs."""

    model_config = ConfigDict(extra="forbid")

    video: StoredArtifact | None = None
    poster: StoredArtifact | None = None
    preview: StoredArtifact | None = None
    manifest: StoredArtifact | None = None
    frames: StoredArtifact | None = None
    clips: list[StoredArtifact] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_artifacts(cls, stored: Mapping[str, StoredArtifact], metrics: dict[str, Any]) -> "StoredResult":
        """The result of a job whose files are `stored` by artifact name (`video`, `clips/3`, ...)."""
        fields: dict[str, Any] = {name: stored[name] for name in SINGLE_ARTIFACTS if name in stored}
        for name in LISTED_ARTIFACTS:
            listed = [n for n in stored if n.startswith(name + "/")]
            fields[name] = [stored[n] for n in sorted(listed, key=lambda n: split_artifact_name(n)[1] or 0)]
        return cls(**fields, metrics=metrics)

    def artifacts(self) -> dict[str, StoredArtifact]:
        """Every artifact by name: `video`, `poster`, ..., `clips/0`, `clips/1`, ..."""
        named: dict[str, StoredArtifact] = {}
        for kind in ARTIFACTS:
            value = getattr(self, kind.name)
            if kind.many:
                named |= {kind.artifact_name(i): a for i, a in enumerate(value)}
            elif value is not None:
                named[kind.name] = value
        return named


def _ts(value: str | None) -> datetime | None:
    return None if not value else datetime.fromtimestamp(float(value), UTC)


@dataclass(frozen=True)
class JobRecord:
    """A job as Redis holds it."""

    id: str
    tenant: str
    status: JobStatus
    model: str
    request: dict[str, Any]
    created_at: datetime
    # what a job gains once it runs; a new job has none of it
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = None
    result: StoredResult | None = None
    error: Problem | None = None
    cancel_requested: bool = False
    attempts: int = 0
    preview: LivePreview | None = None  # the latest live preview, while running

    @classmethod
    def new(cls, job_id: str, tenant: str, model: str, request: dict[str, Any], created_at: float) -> "JobRecord":
        """A job as the create script records it: queued, never attempted."""
        created = datetime.fromtimestamp(created_at, UTC)
        return cls(id=job_id, tenant=tenant, status=JobStatus.queued, model=model, request=request, created_at=created)

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> "JobRecord":
        progress = None
        if h.get("stage"):
            progress = Progress.of(h["stage"], int(h.get("step", "0")), int(h.get("total", "0")))
        created_at = _ts(h["created_at"])
        assert created_at is not None
        return cls(
            id=h["id"],
            tenant=h["tenant"],
            status=JobStatus(h["status"]),
            model=h["model"],
            request=json.loads(h["request"]),
            created_at=created_at,
            started_at=_ts(h.get("started_at")),
            finished_at=_ts(h.get("finished_at")),
            progress=progress,
            result=StoredResult.model_validate_json(h["result"]) if h.get("result") else None,
            error=Problem.model_validate_json(h["error"]) if h.get("error") else None,
            cancel_requested=h.get("cancel") == "1",
            attempts=int(h.get("attempts", "0")),
            preview=LivePreview.model_validate_json(h["preview"]) if h.get("preview") else None,
        )

    def webhook(self) -> tuple[str, list[str]] | None:
        """The job's webhook `(url, events)`, if it asked for one."""
        hook = self.request.get("webhook")
        if not hook:
            return None
        # A stored document has its defaults dumped; a hand-written one may leave `events` out.
        return hook["url"], list(hook.get("events") or ["completed", "failed", "canceled"])


Presign = Callable[[str], str]


@dataclass(frozen=True)
class Presigner:
    """A storage's presigned URLs of one lifetime, and the API's public base URL: what a resource's links
    need. Called with a storage key, it answers that key's URL; a plain `Presign` callable also serves
    `to_resource`, whose resource then has no `expires_at` and no `urls`."""

    sign: Callable[[str, int], str]  # `storage.presigned_url(key, expires_s)`
    expires_in_s: int
    base_url: str | None = None

    def __call__(self, key: str) -> str:
        return self.sign(key, self.expires_in_s)


def job_urls(base_url: str, job_id: str) -> JobUrls:
    """The job's absolute URLs under the API's public base URL."""
    base = base_url.rstrip("/")
    job = f"{base}/v1/jobs/{job_id}"
    return JobUrls(get=job, cancel=f"{job}/cancel", events=f"{job}/events", web=f"{base}/playground#job={job_id}")


def artifact(stored: StoredArtifact, presign: Presign, expires_at: datetime | None) -> Artifact:
    """A stored file as a resource shows it: its URL, and when that URL stops working."""
    return Artifact(
        url=presign(stored.key),
        content_type=stored.content_type,
        bytes=stored.bytes,
        sha256=stored.sha256,
        expires_at=expires_at,
    )


def urls_expire(presign: Presign) -> datetime | None:
    """When a `Presigner`'s URLs expire (None for a plain callable): taken before signing, so the URLs
    live at least until then."""
    if not isinstance(presign, Presigner):
        return None
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=presign.expires_in_s)


def to_resource(
    record: JobRecord, presign: Presign, request: JobRequest | None = None, queue_position: int | None = None
) -> JobResource:
    """The client's view of a record; `presign(key)` turns a storage key into a URL (a `Presigner` also
    gives the URLs' expiry and the job's `urls`). `request` is the record's document where the caller
    already holds it validated; `queue_position` is the queued job's place in its model's queue."""
    expires_at = urls_expire(presign)
    result = None
    if record.result is not None:
        r = record.result
        files: dict[str, Any] = {}
        for kind in ARTIFACTS:
            value = getattr(r, kind.name)
            if kind.many:
                files[kind.name] = [artifact(a, presign, expires_at) for a in value]
            else:
                files[kind.name] = value and artifact(value, presign, expires_at)
        result = JobResult(**files, metrics=r.metrics)
    base_url = presign.base_url if isinstance(presign, Presigner) else None
    return JobResource(
        id=record.id,
        status=record.status,
        progress=record.progress,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        model=record.model,
        request=request if request is not None else JobRequest.model_validate(record.request),
        result=result,
        error=record.error,
        queue_position=queue_position if record.status is JobStatus.queued else None,
        urls=job_urls(base_url, record.id) if base_url else None,
        preview=record.preview if record.status is JobStatus.running else None,
    )


def is_fit(record: JobRecord) -> bool:
    """A direction fit: a job on the model's queue whose document is a `DirectionFitRequest`."""
    return record.request.get("kind") == FIT_KIND


def is_job(record: JobRecord) -> bool:
    """A steering job, read at /v1/jobs: not a direction fit."""
    return not is_fit(record)


def fit_urls(base_url: str, job_id: str) -> FitUrls:
    fit = f"{base_url.rstrip('/')}/v1/directions/fits/{job_id}"
    return FitUrls(get=fit, cancel=f"{fit}/cancel")


def to_fit_resource(record: JobRecord, presign: Presign) -> DirectionFitResource:
    """The client's view of a direction fit's record (`is_fit`); the directions are those it stored."""
    result = record.result
    expires_at = urls_expire(presign)
    base_url = presign.base_url if isinstance(presign, Presigner) else None
    metrics = result.metrics if result is not None else {}
    return DirectionFitResource(
        id=record.id,
        status=record.status,
        progress=record.progress,
        model=record.model,
        request=DirectionFitRequest.model_validate(record.request),
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        directions=[DirectionResource.model_validate(d) for d in metrics.get("directions", [])],
        report=metrics.get("report"),
        manifest=artifact(result.manifest, presign, expires_at) if result and result.manifest else None,
        error=record.error,
        urls=fit_urls(base_url, record.id) if base_url else None,
    )


class AssetRecord(BaseModel):
    """An uploaded asset's metadata; the bytes live in storage at `key`."""

    model_config = ConfigDict(extra="forbid")

    id: str
    tenant: str
    key: str
    kind: str
    content_type: str
    sha256: str
    bytes: int
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    duration: float | None = None
    fps: float | None = None
    codec: str | None = None
    created_at: datetime


class AnchorVersion(BaseModel):
    """One version of an anchor set as Redis holds it (written once, never changed)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    fields: dict[str, Any]
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class AnchorRecord:
    """An anchor set at one of its versions, and its newest version number."""

    id: str
    latest: int
    version: int
    body: AnchorVersion
