"""A typed Python client of the vsteer HTTP API, synchronous (`Client`) and asynchronous (`AsyncClient`).

    from vsteer.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as vs:
        asset = vs.upload_asset("face.png")
        job = vs.submit({"image": f"asset:{asset.id}", "generation": {"num_frames": 14}})
        job = vs.wait(job.id, timeout=600, on_progress=lambda j: print(j.progress))
        files = vs.download(job, "out/")          # {"video": Path("out/video.mp4"), ...}

Errors from the API raise :class:`VsteerError` carrying the RFC 9457 problem details; a job that ends
`failed` is returned by `wait` (its `error` says why), not raised, unless `raise_on_failure=True`.
Downloads go to the presigned URLs of the result, without the API key, and are checked against
the SHA-256 the service recorded.

Only httpx and the `api_schemas` contract are imported, so other applications can depend on this
module without the engine.
"""

import asyncio
import hashlib
import mimetypes
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urljoin

import httpx

from api_schemas import (
    Artifact,
    Asset,
    JobList,
    JobRequest,
    JobResource,
    JobStatus,
    LivePreview,
    ModelList,
    Problem,
    Progress,
)
from api_schemas.anchors import AnchorCreate, AnchorList, AnchorResource, AnchorVersionCreate
from api_schemas.artifacts import ARTIFACTS, extension_for
from api_schemas.comparisons import ComparisonResource
from api_schemas.directions import (
    DirectionCreate,
    DirectionFitList,
    DirectionFitRequest,
    DirectionFitResource,
    DirectionList,
    DirectionResource,
)
from api_schemas.resources import AssetList

Names = list[str]
"""Artifact names: `video`, `poster`, `preview`, `manifest`, `frames`, `clips/<k>`."""
ProgressCallback = Callable[[JobResource], None]
"""Called by `wait` with the job whenever its status or progress changed."""

DEFAULT_TIMEOUT_S = 30.0
# The server sends a keep-alive comment every 15 s on a quiet event stream.
EVENTS_READ_TIMEOUT_S = 60.0
_RETRY_STATUSES = {429, 502, 503, 504}
# Longest `Retry-After` the client sleeps through on its own; a longer one is the caller's decision.
_MAX_RETRY_AFTER_S = 30.0


class VsteerError(Exception):
    """The API answered with an error; `problem` holds its problem details."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail or ''}".strip())
        self.problem = problem

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def field(self) -> str | None:
        return self.problem.field


class JobFailed(VsteerError):
    """`wait(..., raise_on_failure=True)` on a job that ended `failed` or `canceled`."""

    def __init__(self, job: JobResource) -> None:
        problem = job.error or Problem(title=f"Job {job.status.value}", status=409, detail=None)
        super().__init__(problem)
        self.job = job


class WaitTimeout(TimeoutError):
    """`wait` gave up before the job finished; `job` is its latest state."""

    def __init__(self, job: JobResource, timeout_s: float) -> None:
        super().__init__(f"job {job.id} still {job.status.value} after {timeout_s:g} s")
        self.job = job


class DownloadError(Exception):
    """An artifact could not be fetched, or its content did not match its SHA-256."""


# --- what both clients share: requests in, typed values out ---------------------------------------


def _job_body(job: JobRequest | Mapping[str, Any]) -> dict[str, Any]:
    # Validating here gives the caller the schema's error message before any network round trip.
    request = job if isinstance(job, JobRequest) else JobRequest.model_validate(job)
    return request.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _anchor_body(body: AnchorCreate | AnchorVersionCreate | Mapping[str, Any], new: bool) -> dict[str, Any]:
    """An anchor set's fields as sent: validated here first, like a job, and without the defaults
    filled in (the anchor holds what was written, and a job merges only that)."""
    if isinstance(body, AnchorCreate | AnchorVersionCreate):
        anchor: AnchorCreate | AnchorVersionCreate = body
    else:
        anchor = (AnchorCreate if new else AnchorVersionCreate).model_validate(body)
    return anchor.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _anchor_path(anchor_id: str, version: int | None) -> str:
    return f"v1/anchors/{anchor_id}" if version is None else f"v1/anchors/{anchor_id}/versions/{version}"


def _submit_headers(idempotency_key: str | None, wait_s: float | None) -> dict[str, str]:
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    if wait_s:
        headers["Prefer"] = f"wait={int(wait_s)}"
    return headers


def _problem(response: httpx.Response) -> Problem:
    try:
        data = response.json()
        if isinstance(data, dict) and "title" in data:
            data.setdefault("status", response.status_code)
            return Problem.model_validate(data)
    except ValueError:
        pass
    return Problem(
        title=response.reason_phrase or "HTTP error",
        status=response.status_code,
        detail=response.text[:500] or None,
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (`Retry-After`, 0 when absent); None when that is too long to
    wait here, so the error goes back to the caller."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return seconds if seconds <= _MAX_RETRY_AFTER_S else None


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise VsteerError(_problem(response))


def _list_params(status: JobStatus | str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = JobStatus(status).value
    if cursor:
        params["cursor"] = cursor
    return params


def artifacts(job: JobResource) -> dict[str, tuple[Artifact, str]]:
    """Every artifact of a job's result with the file name it is saved under, by name."""
    if job.result is None:
        return {}
    named: dict[str, tuple[Artifact, str]] = {}
    for kind in ARTIFACTS:
        value = getattr(job.result, kind.name)
        if kind.many:
            for index, artifact in enumerate(value):
                named[kind.artifact_name(index)] = (artifact, kind.file(index=index))
        elif value is not None:
            named[kind.name] = (value, kind.file(ext=extension_for(value.content_type)))
    return named


def _result_files(job: JobResource, names: Names | None) -> dict[str, tuple[Artifact, str]]:
    """The artifacts to download; a job without a result (failed, canceled, not done) is an error."""
    if job.result is None:
        why = f": {job.error.detail}" if job.error is not None else ""
        raise DownloadError(f"job {job.id} has no result to download: it is {job.status.value}{why}")
    return {name: named for name, named in artifacts(job).items() if names is None or name in names}


def _changed(previous: JobResource | None, job: JobResource) -> bool:
    return previous is None or (previous.status, previous.progress) != (job.status, job.progress)


class _EventStream:
    """Folds a server-sent event stream (`event: job` / `progress` / `preview`) into the job's latest state."""

    def __init__(self) -> None:
        self.job: JobResource | None = None
        self.last_id: str | None = None  # sent back as `Last-Event-ID` when the stream is resumed
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> JobResource | None:
        """One line of the stream; returns the job when this line completed an event that changed it."""
        if line.startswith(":"):
            return None
        if line:
            name, _, value = line.partition(":")
            if name == "event":
                self._event = value.strip()
            elif name == "id":
                self.last_id = value.strip() or None
            elif name == "data":
                self._data.append(value.removeprefix(" "))
            return None
        event, data = self._event, "\n".join(self._data)
        self._event, self._data = "message", []
        if event == "job" and data:
            self.job = JobResource.model_validate_json(data)
            return self.job
        if event == "progress" and data and self.job is not None:
            self.job = self.job.model_copy(update={"progress": Progress.model_validate_json(data)})
            return self.job
        if event == "preview" and data and self.job is not None:
            self.job = self.job.model_copy(update={"preview": LivePreview.model_validate_json(data)})
            return self.job
        return None


def _events_request(base_url: str, auth: dict[str, str], job_id: str, last_id: str | None) -> dict[str, Any]:
    resume = {"Last-Event-ID": last_id} if last_id else {}
    return {
        "method": "GET",
        "url": urljoin(base_url, f"v1/jobs/{job_id}/events"),
        "headers": {**auth, "Accept": "text/event-stream", **resume},
        "timeout": httpx.Timeout(DEFAULT_TIMEOUT_S, read=EVENTS_READ_TIMEOUT_S),
    }


def _resume_delay(drops: int, retries: int, error: Exception | None) -> float:
    """Seconds before stream `drops` (consecutive, without a new event) is resumed; re-raises the
    transport error (or gives up quietly after a clean close) once `retries` are spent."""
    if drops > retries:
        if error is not None:
            raise error
        raise _StreamOver()
    return min(0.2 * 2 ** (drops - 1), 2.0)


class _StreamOver(Exception):
    """The server keeps closing the stream before the job ends."""


def _finish_wait(job: JobResource, raise_on_failure: bool) -> JobResource:
    if raise_on_failure and job.status is not JobStatus.succeeded:
        raise JobFailed(job)
    return job


class _Digest:
    """Writes a download to a temporary file and checks size and SHA-256 before renaming it."""

    def __init__(self, target: Path, artifact: Artifact) -> None:
        self.target = target
        self.artifact = artifact
        self.partial = target.with_name(target.name + ".part")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "wb")  # noqa: SIM115 - closed in finish()/abort()
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)

    def finish(self) -> Path:
        self.file.close()
        expected = self.artifact.sha256
        if self.size != self.artifact.bytes or (expected and self.sha.hexdigest() != expected):
            self.partial.unlink(missing_ok=True)
            raise DownloadError(
                f"{self.target.name}: got {self.size} bytes with sha256 {self.sha.hexdigest()}, "
                f"expected {self.artifact.bytes} bytes with sha256 {expected}"
            )
        self.partial.replace(self.target)
        return self.target

    def abort(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


def _comparison_body(models: Sequence[str], job: JobRequest | Mapping[str, Any]) -> dict[str, Any]:
    return {"models": list(models), "job": _job_body(job)}


def _comparison_files(comparison: ComparisonResource) -> dict[str, tuple[Artifact, str]]:
    """The side-by-side and the contact sheet of a finished comparison, by name, with their file names."""
    result = comparison.result
    if result is None:
        raise DownloadError(f"comparison {comparison.id} has no result ({comparison.status.value})")
    return {"video": (result.video, "video.mp4"), "contact_sheet": (result.contact_sheet, "contact_sheet.png")}


def _comparison_changed(previous: ComparisonResource | None, comparison: ComparisonResource) -> bool:
    return previous is None or (previous.status, previous.children, previous.progress) != (
        comparison.status,
        comparison.children,
        comparison.progress,
    )


def _fit_body(fit: DirectionFitRequest | Mapping[str, Any]) -> dict[str, Any]:
    """The fit as sent: checked here first, so a mistake fails before a round trip."""
    checked = fit if isinstance(fit, DirectionFitRequest) else DirectionFitRequest.model_validate(dict(fit))
    return checked.model_dump(mode="json", exclude_none=True, exclude={"kind"})


def _fit_changed(previous: DirectionFitResource | None, fit: DirectionFitResource) -> bool:
    return previous is None or (previous.status, previous.progress) != (fit.status, fit.progress)


Polled = TypeVar("Polled", ComparisonResource, DirectionFitResource)


class _Polling(Generic[Polled]):
    """How `wait_comparison` and `wait_fit` follow a resource to a terminal status: `what` names it in the
    timeout's message, `changed` says when `on_progress` hears of it."""

    def __init__(
        self,
        what: str,
        changed: Callable[[Polled | None, Polled], bool],
        timeout: float,
        on_progress: Callable[[Polled], None] | None,
        poll_s: float,
    ) -> None:
        self.what = what
        self.changed: Callable[[Polled | None, Polled], bool] = changed
        self.timeout = timeout
        self.on_progress: Callable[[Polled], None] | None = on_progress
        self.poll_s = poll_s
        self.deadline = time.monotonic() + timeout

    def seen(self, previous: Polled | None, current: Polled) -> float | None:
        """None once `current` is terminal, else the seconds to sleep before the next look; raises
        TimeoutError past the deadline."""
        if self.on_progress is not None and self.changed(previous, current):
            self.on_progress(current)
        if current.status.is_terminal():
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.what} still {current.status.value} after {self.timeout:g} s")
        return min(self.poll_s, left)


def _asset_file(path: str | Path, content_type: str | None) -> tuple[str, bytes, str]:
    path = Path(path)
    guessed = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return path.name, path.read_bytes(), guessed


# --- the synchronous client -------------------------------------------------------------------------


class Client:
    """Synchronous client. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.retries = retries
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The API key goes on API calls only: presigned download URLs carry their own signature.
        self._http = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; connection errors and 502/503/504 are retried (every call here is
        idempotent: submits carry an Idempotency-Key)."""
        headers = {**self._auth, **kwargs.pop("headers", {})}
        url = urljoin(self.base_url, path.lstrip("/"))
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self.retries:
                    return _check(response)
                if (delay := _retry_after(response)) is None:
                    return _check(response)
                time.sleep(delay or min(0.2 * 2**attempt, 2.0))
                continue
            time.sleep(min(0.2 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def submit(
        self,
        job: JobRequest | Mapping[str, Any],
        idempotency_key: str | None = None,
        wait_s: float | None = None,
    ) -> JobResource:
        """POST /v1/jobs. Without `idempotency_key` a fresh one is made, so retries are safe."""
        response = self._request(
            "POST", "v1/jobs", json=_job_body(job), headers=_submit_headers(idempotency_key, wait_s)
        )
        return JobResource.model_validate(response.json())

    def get(self, job_id: str) -> JobResource:
        return JobResource.model_validate(self._request("GET", f"v1/jobs/{job_id}").json())

    def list(self, status: JobStatus | str | None = None, limit: int = 20, cursor: str | None = None) -> JobList:
        """One page of the caller's jobs, newest first; pass `next_cursor` for the next."""
        response = self._request("GET", "v1/jobs", params=_list_params(status, limit, cursor))
        return JobList.model_validate(response.json())

    def iter_jobs(self, status: JobStatus | str | None = None, page_size: int = 50) -> Iterator[JobResource]:
        cursor = None
        while True:
            page = self.list(status, page_size, cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> JobResource:
        """POST /v1/jobs/{id}/cancel: a queued job is canceled at once, a running one within a step."""
        return JobResource.model_validate(self._request("POST", f"v1/jobs/{job_id}/cancel").json())

    def delete(self, job_id: str) -> None:
        """DELETE /v1/jobs/{id}: remove a finished job's record and result files (a queued or running job
        is refused with 409: cancel it first)."""
        self._request("DELETE", f"v1/jobs/{job_id}")

    def events(self, job_id: str) -> Iterator[JobResource]:
        """Follow the job through `GET /v1/jobs/{id}/events`: its state after every change, first the
        current one; ends after a terminal status. A dropped stream is resumed (`Last-Event-ID`, up to
        `retries` times in a row without a new event); it ends early only when the server keeps
        closing it."""
        stream = _EventStream()
        drops = 0
        while True:
            error: Exception | None = None
            try:
                with self._http.stream(
                    **_events_request(self.base_url, self._auth, job_id, stream.last_id)
                ) as response:
                    if not response.is_success:
                        response.read()
                        _check(response)
                    for line in response.iter_lines():
                        job = stream.feed(line)
                        if job is not None:
                            drops = 0
                            yield job
                            if job.status.is_terminal():
                                return
            except httpx.TransportError as exc:
                error = exc
            drops += 1
            try:
                time.sleep(_resume_delay(drops, self.retries, error))
            except _StreamOver:
                return

    def wait(
        self,
        job_id: str,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        poll_s: float = 0.25,
        raise_on_failure: bool = False,
        stream: bool = False,
    ) -> JobResource:
        """Wait until the job is terminal, calling `on_progress(job)` on every change; raises WaitTimeout.

        Polls every `poll_s` seconds, or with `stream=True` follows the server-sent events (every step
        without polling; the timeout is then checked whenever an event or keep-alive arrives).
        """
        deadline = time.monotonic() + timeout
        previous: JobResource | None = None
        if stream:
            with closing(self.events(job_id)) as events:
                for job in events:
                    if on_progress is not None and _changed(previous, job):
                        on_progress(job)
                    previous = job
                    if job.status.is_terminal():
                        return _finish_wait(job, raise_on_failure)
                    if time.monotonic() >= deadline:
                        raise WaitTimeout(job, timeout)
        while True:
            job = self.get(job_id)
            if on_progress is not None and _changed(previous, job):
                on_progress(job)
            previous = job
            if job.status.is_terminal():
                return _finish_wait(job, raise_on_failure)
            if time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout)
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    def download(self, job: JobResource, dest_dir: str | Path, names: Names | None = None) -> dict[str, Path]:
        """Save the result's files (all, or `names`) under `dest_dir`; returns name → path.

        The URLs expire: pass a freshly fetched job (`client.get(id)`) when the one at hand is old.
        """
        return self._save(_result_files(job, names), Path(dest_dir))

    def _save(self, files: dict[str, tuple[Artifact, str]], dest: Path) -> dict[str, Path]:
        """Fetch each artifact into `dest` under its file name, checked against its sha256."""
        saved: dict[str, Path] = {}
        for name, (artifact, file_name) in files.items():
            sink = _Digest(dest / file_name, artifact)
            try:
                with self._http.stream("GET", urljoin(self.base_url, artifact.url)) as response:
                    if not response.is_success:
                        response.read()
                        raise DownloadError(f"{name}: GET {artifact.url} answered {response.status_code}")
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                saved[name] = sink.finish()
            except BaseException:
                sink.abort()
                raise
        return saved

    def upload_asset(self, path: str | Path, content_type: str | None = None, *, data: bytes | None = None) -> Asset:
        """POST /v1/assets (multipart `file`); give a path, or `data` with `path` as the file name."""
        name, content, guessed = (
            _asset_file(path, content_type)
            if data is None
            else (
                Path(path).name,
                data,
                content_type or mimetypes.guess_type(str(path))[0] or "application/octet-stream",
            )
        )
        response = self._request("POST", "v1/assets", files={"file": (name, content, guessed)})
        return Asset.model_validate(response.json())

    def get_asset(self, asset_id: str) -> Asset:
        """GET /v1/assets/{id}: the record of an uploaded file."""
        return Asset.model_validate(self._request("GET", f"v1/assets/{asset_id}").json())

    def list_assets(self, limit: int = 20, cursor: str | None = None) -> AssetList:
        """A page of the tenant's uploaded images and videos, newest first."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return AssetList.model_validate(self._request("GET", "v1/assets", params=params).json())

    def create_anchor(self, anchor: AnchorCreate | Mapping[str, Any]) -> AnchorResource:
        """POST /v1/anchors: a new anchor set (`{"name": ..., "seed": ..., "references": [...]}`), version 1.
        A job cites it with `"anchor": "<id>"` (the latest version) or `"<id>@<version>"`."""
        body = _anchor_body(anchor, new=True)
        return AnchorResource.model_validate(self._request("POST", "v1/anchors", json=body).json())

    def add_anchor_version(self, anchor_id: str, anchor: AnchorVersionCreate | Mapping[str, Any]) -> AnchorResource:
        """POST /v1/anchors/{id}/versions: the next version (the whole bundle; `name` is kept if left out)."""
        body = _anchor_body(anchor, new=False)
        response = self._request("POST", f"v1/anchors/{anchor_id}/versions", json=body)
        return AnchorResource.model_validate(response.json())

    def get_anchor(self, anchor_id: str, version: int | None = None) -> AnchorResource:
        """An anchor set at `version` (the latest when None)."""
        return AnchorResource.model_validate(self._request("GET", _anchor_path(anchor_id, version)).json())

    def list_anchors(self, limit: int = 20, cursor: str | None = None) -> AnchorList:
        """A page of the tenant's anchor sets (each at its latest version), newest first."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return AnchorList.model_validate(self._request("GET", "v1/anchors", params=params).json())

    def delete_anchor(self, anchor_id: str) -> None:
        """Delete an anchor set and all its versions; jobs that cited it keep their merged documents."""
        self._request("DELETE", f"v1/anchors/{anchor_id}")

    def compare(self, models: Sequence[str], job: JobRequest | Mapping[str, Any]) -> ComparisonResource:
        """POST /v1/comparisons: `job` (without `model`) on each of `models`, one child job per model,
        all with one seed."""
        response = self._request("POST", "v1/comparisons", json=_comparison_body(models, job))
        return ComparisonResource.model_validate(response.json())

    def get_comparison(self, comparison_id: str) -> ComparisonResource:
        return ComparisonResource.model_validate(self._request("GET", f"v1/comparisons/{comparison_id}").json())

    def cancel_comparison(self, comparison_id: str) -> ComparisonResource:
        """POST /v1/comparisons/{id}/cancel: cancels every child still queued or running."""
        response = self._request("POST", f"v1/comparisons/{comparison_id}/cancel")
        return ComparisonResource.model_validate(response.json())

    def wait_comparison(
        self,
        comparison_id: str,
        timeout: float = 600.0,
        on_progress: Callable[[ComparisonResource], None] | None = None,
        poll_s: float = 0.5,
    ) -> ComparisonResource:
        """Poll until the comparison is terminal (its side-by-side made, or it failed or was canceled),
        calling `on_progress` on every change; raises TimeoutError."""
        polling = _Polling(f"comparison {comparison_id}", _comparison_changed, timeout, on_progress, poll_s)
        previous: ComparisonResource | None = None
        while True:
            comparison = self.get_comparison(comparison_id)
            if (pause := polling.seen(previous, comparison)) is None:
                return comparison
            previous = comparison
            time.sleep(pause)

    def download_comparison(self, comparison: ComparisonResource, dest_dir: str | Path) -> dict[str, Path]:
        """Save the side-by-side (`video.mp4`) and the contact sheet (`contact_sheet.png`) under
        `dest_dir`, sha256-checked; returns name → path."""
        return self._save(_comparison_files(comparison), Path(dest_dir))

    def create_direction(
        self, vector: Sequence[float], model: str, space: str = "embedding", name: str | None = None
    ) -> DirectionResource:
        """POST /v1/directions: store a vector made elsewhere; jobs cite it as `{"id": ...}`."""
        body = DirectionCreate(vector=list(vector), model=model, space=space, name=name)  # type: ignore[arg-type]
        response = self._request("POST", "v1/directions", json=body.model_dump(exclude_none=True))
        return DirectionResource.model_validate(response.json())

    def upload_direction(
        self, path: str | Path, model: str | None = None, space: str = "embedding", name: str | None = None
    ) -> DirectionResource:
        """POST /v1/directions (multipart): store a safetensors file's direction (on the service's default
        model when `model` is None)."""
        form = {"space": space, **({"model": model} if model else {}), **({"name": name} if name else {})}
        files = {"file": (Path(path).name, Path(path).read_bytes(), "application/octet-stream")}
        response = self._request("POST", "v1/directions", data=form, files=files)
        return DirectionResource.model_validate(response.json())

    def get_direction(self, direction_id: str) -> DirectionResource:
        return DirectionResource.model_validate(self._request("GET", f"v1/directions/{direction_id}").json())

    def list_directions(self, limit: int = 100, cursor: str | None = None) -> DirectionList:
        """A page of the tenant's stored directions, newest first."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = self._request("GET", "v1/directions", params=params)
        return DirectionList.model_validate(response.json())

    def delete_direction(self, direction_id: str) -> None:
        self._request("DELETE", f"v1/directions/{direction_id}")

    def fit_directions(self, fit: DirectionFitRequest | Mapping[str, Any]) -> DirectionFitResource:
        """POST /v1/directions with a `method`: fit a set of directions on uploaded images (`asset:<id>`)
        on the model's GPU worker; `wait_fit` follows it to the directions it stores."""
        response = self._request("POST", "v1/directions", json=_fit_body(fit))
        return DirectionFitResource.model_validate(response.json())

    def get_fit(self, fit_id: str) -> DirectionFitResource:
        return DirectionFitResource.model_validate(self._request("GET", f"v1/directions/fits/{fit_id}").json())

    def list_fits(self, limit: int = 20, cursor: str | None = None) -> DirectionFitList:
        """A page of the tenant's direction fits, newest first."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return DirectionFitList.model_validate(self._request("GET", "v1/directions/fits", params=params).json())

    def cancel_fit(self, fit_id: str) -> DirectionFitResource:
        response = self._request("POST", f"v1/directions/fits/{fit_id}/cancel")
        return DirectionFitResource.model_validate(response.json())

    def wait_fit(
        self,
        fit_id: str,
        timeout: float = 600.0,
        on_progress: Callable[[DirectionFitResource], None] | None = None,
        poll_s: float = 0.5,
    ) -> DirectionFitResource:
        """Poll until the fit is terminal, calling `on_progress` on every change; raises TimeoutError."""
        polling = _Polling(f"direction fit {fit_id}", _fit_changed, timeout, on_progress, poll_s)
        previous: DirectionFitResource | None = None
        while True:
            fit = self.get_fit(fit_id)
            if (pause := polling.seen(previous, fit)) is None:
                return fit
            previous = fit
            time.sleep(pause)

    def models(self) -> ModelList:
        return ModelList.model_validate(self._request("GET", "v1/models").json())


# --- the asynchronous client ------------------------------------------------------------------------


class AsyncClient:
    """Asynchronous client with the same methods as :class:`Client`, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.retries = retries
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport, follow_redirects=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        url = urljoin(self.base_url, path.lstrip("/"))
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self.retries:
                    return _check(response)
                if (delay := _retry_after(response)) is None:
                    return _check(response)
                await asyncio.sleep(delay or min(0.2 * 2**attempt, 2.0))
                continue
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    async def submit(
        self,
        job: JobRequest | Mapping[str, Any],
        idempotency_key: str | None = None,
        wait_s: float | None = None,
    ) -> JobResource:
        response = await self._request(
            "POST", "v1/jobs", json=_job_body(job), headers=_submit_headers(idempotency_key, wait_s)
        )
        return JobResource.model_validate(response.json())

    async def get(self, job_id: str) -> JobResource:
        return JobResource.model_validate((await self._request("GET", f"v1/jobs/{job_id}")).json())

    async def list(self, status: JobStatus | str | None = None, limit: int = 20, cursor: str | None = None) -> JobList:
        response = await self._request("GET", "v1/jobs", params=_list_params(status, limit, cursor))
        return JobList.model_validate(response.json())

    async def iter_jobs(self, status: JobStatus | str | None = None, page_size: int = 50) -> AsyncIterator[JobResource]:
        cursor = None
        while True:
            page = await self.list(status, page_size, cursor)
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> JobResource:
        return JobResource.model_validate((await self._request("POST", f"v1/jobs/{job_id}/cancel")).json())

    async def delete(self, job_id: str) -> None:
        """As `Client.delete`."""
        await self._request("DELETE", f"v1/jobs/{job_id}")

    async def events(self, job_id: str) -> AsyncIterator[JobResource]:
        stream = _EventStream()
        drops = 0
        while True:
            error: Exception | None = None
            request = _events_request(self.base_url, self._auth, job_id, stream.last_id)
            try:
                async with self._http.stream(**request) as response:
                    if not response.is_success:
                        await response.aread()
                        _check(response)
                    async for line in response.aiter_lines():
                        job = stream.feed(line)
                        if job is not None:
                            drops = 0
                            yield job
                            if job.status.is_terminal():
                                return
            except httpx.TransportError as exc:
                error = exc
            drops += 1
            try:
                await asyncio.sleep(_resume_delay(drops, self.retries, error))
            except _StreamOver:
                return

    async def wait(
        self,
        job_id: str,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        poll_s: float = 0.25,
        raise_on_failure: bool = False,
        stream: bool = False,
    ) -> JobResource:
        deadline = time.monotonic() + timeout
        previous: JobResource | None = None
        if stream:
            async with aclosing(self.events(job_id)) as events:
                async for job in events:
                    if on_progress is not None and _changed(previous, job):
                        on_progress(job)
                    previous = job
                    if job.status.is_terminal():
                        return _finish_wait(job, raise_on_failure)
                    if time.monotonic() >= deadline:
                        raise WaitTimeout(job, timeout)
        while True:
            job = await self.get(job_id)
            if on_progress is not None and _changed(previous, job):
                on_progress(job)
            previous = job
            if job.status.is_terminal():
                return _finish_wait(job, raise_on_failure)
            if time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout)
            await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    async def download(self, job: JobResource, dest_dir: str | Path, names: Names | None = None) -> dict[str, Path]:
        return await self._save(_result_files(job, names), Path(dest_dir))

    async def _save(self, files: dict[str, tuple[Artifact, str]], dest: Path) -> dict[str, Path]:
        saved: dict[str, Path] = {}
        for name, (artifact, file_name) in files.items():
            sink = _Digest(dest / file_name, artifact)
            try:
                async with self._http.stream("GET", urljoin(self.base_url, artifact.url)) as response:
                    if not response.is_success:
                        await response.aread()
                        raise DownloadError(f"{name}: GET {artifact.url} answered {response.status_code}")
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                saved[name] = sink.finish()
            except BaseException:
                sink.abort()
                raise
        return saved

    async def upload_asset(
        self, path: str | Path, content_type: str | None = None, *, data: bytes | None = None
    ) -> Asset:
        name, content, guessed = (
            _asset_file(path, content_type)
            if data is None
            else (
                Path(path).name,
                data,
                content_type or mimetypes.guess_type(str(path))[0] or "application/octet-stream",
            )
        )
        response = await self._request("POST", "v1/assets", files={"file": (name, content, guessed)})
        return Asset.model_validate(response.json())

    async def get_asset(self, asset_id: str) -> Asset:
        """GET /v1/assets/{id}: the record of an uploaded file."""
        return Asset.model_validate((await self._request("GET", f"v1/assets/{asset_id}")).json())

    async def list_assets(self, limit: int = 20, cursor: str | None = None) -> AssetList:
        """As `Client.list_assets`."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return AssetList.model_validate((await self._request("GET", "v1/assets", params=params)).json())

    async def create_anchor(self, anchor: AnchorCreate | Mapping[str, Any]) -> AnchorResource:
        """As `Client.create_anchor`."""
        body = _anchor_body(anchor, new=True)
        return AnchorResource.model_validate((await self._request("POST", "v1/anchors", json=body)).json())

    async def add_anchor_version(
        self, anchor_id: str, anchor: AnchorVersionCreate | Mapping[str, Any]
    ) -> AnchorResource:
        """As `Client.add_anchor_version`."""
        body = _anchor_body(anchor, new=False)
        response = await self._request("POST", f"v1/anchors/{anchor_id}/versions", json=body)
        return AnchorResource.model_validate(response.json())

    async def get_anchor(self, anchor_id: str, version: int | None = None) -> AnchorResource:
        """As `Client.get_anchor`."""
        return AnchorResource.model_validate((await self._request("GET", _anchor_path(anchor_id, version))).json())

    async def list_anchors(self, limit: int = 20, cursor: str | None = None) -> AnchorList:
        """As `Client.list_anchors`."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return AnchorList.model_validate((await self._request("GET", "v1/anchors", params=params)).json())

    async def delete_anchor(self, anchor_id: str) -> None:
        """As `Client.delete_anchor`."""
        await self._request("DELETE", f"v1/anchors/{anchor_id}")

    async def compare(self, models: Sequence[str], job: JobRequest | Mapping[str, Any]) -> ComparisonResource:
        response = await self._request("POST", "v1/comparisons", json=_comparison_body(models, job))
        return ComparisonResource.model_validate(response.json())

    async def get_comparison(self, comparison_id: str) -> ComparisonResource:
        response = await self._request("GET", f"v1/comparisons/{comparison_id}")
        return ComparisonResource.model_validate(response.json())

    async def cancel_comparison(self, comparison_id: str) -> ComparisonResource:
        response = await self._request("POST", f"v1/comparisons/{comparison_id}/cancel")
        return ComparisonResource.model_validate(response.json())

    async def wait_comparison(
        self,
        comparison_id: str,
        timeout: float = 600.0,
        on_progress: Callable[[ComparisonResource], None] | None = None,
        poll_s: float = 0.5,
    ) -> ComparisonResource:
        polling = _Polling(f"comparison {comparison_id}", _comparison_changed, timeout, on_progress, poll_s)
        previous: ComparisonResource | None = None
        while True:
            comparison = await self.get_comparison(comparison_id)
            if (pause := polling.seen(previous, comparison)) is None:
                return comparison
            previous = comparison
            await asyncio.sleep(pause)

    async def download_comparison(self, comparison: ComparisonResource, dest_dir: str | Path) -> dict[str, Path]:
        return await self._save(_comparison_files(comparison), Path(dest_dir))

    async def create_direction(
        self, vector: Sequence[float], model: str, space: str = "embedding", name: str | None = None
    ) -> DirectionResource:
        body = DirectionCreate(vector=list(vector), model=model, space=space, name=name)  # type: ignore[arg-type]
        response = await self._request("POST", "v1/directions", json=body.model_dump(exclude_none=True))
        return DirectionResource.model_validate(response.json())

    async def get_direction(self, direction_id: str) -> DirectionResource:
        return DirectionResource.model_validate((await self._request("GET", f"v1/directions/{direction_id}")).json())

    async def list_directions(self, limit: int = 100, cursor: str | None = None) -> DirectionList:
        """A page of the tenant's stored directions, newest first."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await self._request("GET", "v1/directions", params=params)
        return DirectionList.model_validate(response.json())

    async def delete_direction(self, direction_id: str) -> None:
        await self._request("DELETE", f"v1/directions/{direction_id}")

    async def fit_directions(self, fit: DirectionFitRequest | Mapping[str, Any]) -> DirectionFitResource:
        response = await self._request("POST", "v1/directions", json=_fit_body(fit))
        return DirectionFitResource.model_validate(response.json())

    async def get_fit(self, fit_id: str) -> DirectionFitResource:
        response = await self._request("GET", f"v1/directions/fits/{fit_id}")
        return DirectionFitResource.model_validate(response.json())

    async def list_fits(self, limit: int = 20, cursor: str | None = None) -> DirectionFitList:
        """As `Client.list_fits`."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await self._request("GET", "v1/directions/fits", params=params)
        return DirectionFitList.model_validate(response.json())

    async def cancel_fit(self, fit_id: str) -> DirectionFitResource:
        response = await self._request("POST", f"v1/directions/fits/{fit_id}/cancel")
        return DirectionFitResource.model_validate(response.json())

    async def wait_fit(
        self,
        fit_id: str,
        timeout: float = 600.0,
        on_progress: Callable[[DirectionFitResource], None] | None = None,
        poll_s: float = 0.5,
    ) -> DirectionFitResource:
        polling = _Polling(f"direction fit {fit_id}", _fit_changed, timeout, on_progress, poll_s)
        previous: DirectionFitResource | None = None
        while True:
            fit = await self.get_fit(fit_id)
            if (pause := polling.seen(previous, fit)) is None:
                return fit
            previous = fit
            await asyncio.sleep(pause)

    async def models(self) -> ModelList:
        return ModelList.model_validate((await self._request("GET", "v1/models")).json())
