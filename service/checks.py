"""What a job document (or an anchor set) must satisfy on this deployment, beyond its schema: known model,
assets and stored directions that exist for the tenant, no local paths, decodable inline images, a webhook
URL that passes the SSRF guard.

Every broken rule is collected, so one 422 names them all.
"""

import base64
import binascii
import io
import json
from functools import partial

import anyio.to_thread
from PIL import Image

from api_schemas import Direction, FieldError, JobRequest
from api_schemas.anchors import AnchorFields
from api_schemas.directions import DirectionFitRequest
from api_schemas.refs import RefKind, asset_id, ref_kind
from api_schemas.video import BUILTIN_NUM_FRAMES, clip_too_short
from jobstate.redis_keys import direction_record_key
from jobstate.store import AsyncJobStore
from service.errors import invalid
from service.images import SNIFF_BYTES, MediaRejected, inspect_image, sniff
from service.settings import Settings
from service.videos import inspect_video_bytes
from storage.base import Storage
from storage.keys import direction_key
from webhooks.ssrf_guard import UnsafeURL, resolve_target

LOCAL_PATHS = "local paths are accepted by the CLI only"
# An image of at most this many pixels (by its header: a few bytes can describe a huge image) decodes
# in well under a millisecond: on the event loop that costs less than the hop to a worker thread and
# back. Larger ones go to a thread so they never stall other requests.
INLINE_DECODE_MAX_PIXELS = 256 * 256


def data_uri_bytes(ref: str) -> bytes:
    """The bytes of a `data:image/...;base64,` URI; raises `MediaRejected`."""
    header, _, payload = ref.partition(",")
    if not header.lower().startswith("data:image/"):
        raise MediaRejected("data_uri_image", "a data URI here must hold an image (data:image/...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaRejected("data_uri_base64", "the data URI is not valid base64") from None


def _small_image(raw: bytes) -> bool:
    """Whether the image's header gives at most `INLINE_DECODE_MAX_PIXELS` (no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size
    except Exception:
        return False  # undecidable here: the full check in a thread says why
    return width * height <= INLINE_DECODE_MAX_PIXELS


async def _check_data_uri(ref: str, max_pixels: int) -> None:
    raw = data_uri_bytes(ref)
    if _small_image(raw):
        inspect_image(io.BytesIO(raw), max_pixels)
    else:
        await anyio.to_thread.run_sync(inspect_image, io.BytesIO(raw), max_pixels)


async def check_document(
    doc: JobRequest, tenant: str, store: AsyncJobStore, settings: Settings, storage: Storage
) -> None:
    """Raise a 422 `ProblemError` naming every field that breaks a deployment rule."""
    errors: list[FieldError] = []
    # 1. the model
    errors += _check_model(doc.model, settings)
    # 2. image references
    errors += await _check_images(doc.image_refs(), tenant, store, settings)
    # 3. direction sources
    errors += await _check_directions(doc.directions, tenant, storage, store, doc.model or settings.default_model)
    errors += text_encoder_errors(doc.directions, doc.model or settings.default_model, settings)
    # 3b. the video to edit
    errors += await _check_video(doc, tenant, store)
    # 3c. a long video's overlap against the model's frames when the job leaves them to the model
    errors += _check_segments(doc, settings)
    # 4. the webhook target
    if doc.webhook is not None:
        errors += await _check_webhook(doc.webhook.url, settings)
    if errors:
        raise invalid(errors)


async def check_anchor(
    fields: AnchorFields, tenant: str, store: AsyncJobStore, settings: Settings, storage: Storage
) -> None:
    """The rules of `check_document` for the fields of an anchor set: a 422 naming every field that
    breaks one (the model, the images, the stored directions it cites)."""
    errors = _check_model(fields.model, settings)
    errors += await _check_images(fields.image_refs(), tenant, store, settings)
    errors += await _check_directions(fields.directions or [], tenant, storage, store, fields.model)
    if fields.model is not None:
        errors += text_encoder_errors(fields.directions or [], fields.model, settings)
    if errors:
        raise invalid(errors, title="Invalid anchor set")


async def check_fit(fit: DirectionFitRequest, tenant: str, store: AsyncJobStore, settings: Settings) -> None:
    """The rules of `check_document` for a direction fit: a known model (with a text encoder for `text`),
    the tenant's own image assets, a public webhook target; a 422 naming every field that breaks one."""
    errors = _check_model(fit.model, settings)
    if fit.method == "text" and not settings.has_text_encoder(fit.model):
        message = (
            f"model {fit.model!r} has no text encoder to fit a `text` direction; configure one for it (its spec's "
            "`text_encoder`, which the API reads from VSTEER_MODELS or VSTEER_TEXT_ENCODER_MODELS)"
        )
        errors.append(FieldError(field="method", rule="text_encoder_missing", message=message))
    errors += await _check_images(fit.asset_refs(), tenant, store, settings)
    if fit.webhook is not None:
        errors += await _check_webhook(fit.webhook.url, settings)
    if errors:
        raise invalid(errors, title="Invalid direction")


async def _check_webhook(url: str, settings: Settings) -> list[FieldError]:
    try:
        await anyio.to_thread.run_sync(partial(resolve_target, url, settings.webhook_allow_private))
    except UnsafeURL as exc:
        return [FieldError(field="webhook.url", rule="public_url", message=str(exc))]
    return []


def _check_model(model: str | None, settings: Settings) -> list[FieldError]:
    if model is None or model in settings.models:
        return []
    return [
        FieldError(
            field="model", rule="known_model", message=f"unknown model {model!r}; known: {', '.join(settings.models)}"
        )
    ]


async def _check_images(
    refs: list[tuple[str, str]], tenant: str, store: AsyncJobStore, settings: Settings
) -> list[FieldError]:
    errors: list[FieldError] = []
    for field, ref in refs:
        kind = ref_kind(ref)
        if kind is RefKind.path:
            errors.append(FieldError(field=field, rule="no_local_paths", message=LOCAL_PATHS))
        elif kind is RefKind.url and not settings.allow_remote_images:
            errors.append(
                FieldError(
                    field=field,
                    rule="no_remote_images",
                    message="remote image URLs are not enabled; upload with POST /v1/assets",
                )
            )
        elif kind is RefKind.url and ref.startswith("s3://"):
            errors.append(
                FieldError(
                    field=field,
                    rule="http_url",
                    message="s3:// references are not fetched; give an https:// URL or upload with POST /v1/assets",
                )
            )
        elif kind is RefKind.url:
            # Fetched by a worker inside the network: the same SSRF guard as webhooks.
            try:
                await anyio.to_thread.run_sync(partial(resolve_target, ref, settings.webhook_allow_private))
            except UnsafeURL as exc:
                errors.append(FieldError(field=field, rule="public_url", message=str(exc).replace("webhook ", "")))
        elif kind is RefKind.asset:
            ident = asset_id(ref)
            asset = await store.get_asset(tenant, ident)
            if asset is None:
                errors.append(FieldError(field=field, rule="unknown_asset", message=f"no asset {ident!r}"))
            elif asset.kind != "image":
                errors.append(
                    FieldError(
                        field=field, rule="image_asset", message=f"asset {ident!r} is a {asset.kind}, not an image"
                    )
                )
        elif kind is RefKind.data:
            try:
                await _check_data_uri(ref, settings.max_image_pixels)
            except MediaRejected as exc:
                errors.append(FieldError(field=field, rule=exc.rule, message=str(exc)))
    return errors


def video_data_uri_bytes(ref: str) -> bytes:
    """The bytes of a `data:video/...;base64,` URI; raises `MediaRejected`."""
    header, _, payload = ref.partition(",")
    if not header.lower().startswith("data:video/"):
        raise MediaRejected("data_uri_video", "a data URI here must hold a video (data:video/...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaRejected("data_uri_base64", "the data URI is not valid base64") from None


async def _check_video(doc: JobRequest, tenant: str, store: AsyncJobStore) -> list[FieldError]:
    """A video to edit is an uploaded video asset of the tenant or an inline clip that decodes within the
    limits, long enough for the job's frames at its fps from `start` (when the frames are known here: given,
    or a built-in model's default)."""
    video = doc.video
    if video is None:
        return []
    field = "video.source"
    kind = ref_kind(video.source)
    if kind is RefKind.path:
        return [FieldError(field=field, rule="no_local_paths", message=LOCAL_PATHS)]
    duration: float | None = None
    if kind is RefKind.asset:
        ident = asset_id(video.source)
        asset = await store.get_asset(tenant, ident)
        if asset is None:
            return [FieldError(field=field, rule="unknown_asset", message=f"no asset {ident!r}")]
        if asset.kind != "video":
            return [
                FieldError(
                    field=field,
                    rule="video_asset",
                    message=f"asset {ident!r} is not a video (it is an {asset.kind} asset)",
                )
            ]
        duration = asset.duration
    elif kind is RefKind.data:
        try:
            raw = video_data_uri_bytes(video.source)
            sniffed = sniff(raw[:SNIFF_BYTES])
            if sniffed is None or sniffed.kind != "video":
                raise MediaRejected("video_format", "the data URI does not hold an MP4 or WebM video")
            duration = (await anyio.to_thread.run_sync(inspect_video_bytes, raw)).duration
        except MediaRejected as exc:
            return [FieldError(field=field, rule=exc.rule, message=str(exc))]
    frames = doc.generation.num_frames or BUILTIN_NUM_FRAMES.get(doc.model or "")
    if duration is not None and frames is not None:
        reason = clip_too_short(duration, video.start, frames, doc.generation.fps)
        if reason is not None:
            return [FieldError(field="video.start", rule="video_long_enough", message=reason)]
    return []


def _check_segments(doc: JobRequest, settings: Settings) -> list[FieldError]:
    """`segments.overlap` below the clip's frames; the schema checks it when the job gives
    `num_frames`, this with a built-in model's default (the worker checks any other model's)."""
    segments = doc.segments
    frames = doc.generation.num_frames or BUILTIN_NUM_FRAMES.get(doc.model or settings.default_model)
    if segments is None or frames is None or segments.overlap < frames:
        return []
    message = f"`segments.overlap` must be less than the {frames} frames of a clip, got {segments.overlap}"
    return [FieldError(field="segments.overlap", rule="segments_overlap_below_frames", message=message)]


async def _check_directions(
    directions: list[Direction], tenant: str, storage: Storage, store: AsyncJobStore, model: str | None
) -> list[FieldError]:
    """No local files; a stored direction (`id`) must exist under the tenant's prefix, where the
    worker reads it, and, where it was stored through the API (its record says where it lives), be
    for the job's `model` (when known) and the direction's `space`."""
    errors: list[FieldError] = []
    for i, direction in enumerate(directions):
        sources = [("source", direction.source)] + [(f"preserve[{j}]", p) for j, p in enumerate(direction.preserve)]
        for name, source in sources:
            if source.path is not None:
                errors.append(
                    FieldError(field=f"directions[{i}].{name}.path", rule="no_local_paths", message=LOCAL_PATHS)
                )
            elif source.id is not None:
                key = direction_key(tenant, source.id)
                if not await anyio.to_thread.run_sync(storage.exists, key):
                    errors.append(
                        FieldError(
                            field=f"directions[{i}].{name}.id",
                            rule="unknown_direction",
                            message=f"no direction {source.id!r}",
                        )
                    )
                    continue
                errors += await _direction_fits(
                    store, tenant, source.id, f"directions[{i}].{name}.id", model, direction
                )
    return errors


async def _direction_fits(
    store: AsyncJobStore, tenant: str, direction_id: str, field: str, model: str | None, direction: Direction
) -> list[FieldError]:
    raw = await store.redis.get(direction_record_key(tenant, direction_id))
    if raw is None:
        return []  # put in storage another way: the worker checks its width
    record = json.loads(raw)
    if model is not None and record.get("model") not in (None, model):
        message = f"direction {direction_id!r} is for model {record['model']!r}, the job runs {model!r}"
        return [FieldError(field=field, rule="direction_model", message=message)]
    if record.get("space") not in (None, direction.space):
        space = record["space"]
        message = (
            f"direction {direction_id!r} acts on the {space} space, this direction's `space` is {direction.space!r}"
        )
        return [FieldError(field=field, rule="direction_space", message=message)]
    return []


def text_encoder_errors(directions: list[Direction], model: str, settings: Settings) -> list[FieldError]:
    """A `text` direction source needs a text encoder on the job's model (`Settings.has_text_encoder`)."""
    if settings.has_text_encoder(model):
        return []
    errors = []
    for i, direction in enumerate(directions):
        sources = [("source", direction.source)] + [(f"preserve[{j}]", p) for j, p in enumerate(direction.preserve)]
        for name, source in sources:
            if source.text is not None:
                message = (
                    f"model {model!r} has no text encoder for `text` directions; configure one for it (its spec's "
                    "`text_encoder`, which the API reads from VSTEER_MODELS or VSTEER_TEXT_ENCODER_MODELS) or give "
                    "a vector"
                )
                errors.append(
                    FieldError(field=f"directions[{i}].{name}.text", rule="text_encoder_missing", message=message)
                )
    return errors


def resolve_defaults(doc: JobRequest, settings: Settings, seed: int) -> JobRequest:
    """The document as accepted: the model named and a seed chosen (and so recorded) when left out."""
    update: dict[str, object] = {}
    if doc.model is None:
        update["model"] = settings.default_model
    if doc.seed is None:
        update["seed"] = seed
    return doc.model_copy(update=update) if update else doc


__all__ = [
    "LOCAL_PATHS",
    "check_anchor",
    "check_document",
    "data_uri_bytes",
    "resolve_defaults",
    "text_encoder_errors",
    "video_data_uri_bytes",
]
