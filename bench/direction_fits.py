"""Directions as a service: a fit over HTTP against the same fit in-process, and a job citing stored
directions against the same job with the vectors inline.

1. *Fit*: `pca` (k=4) on 64 uploaded pictures. Over HTTP: `POST /v1/directions` on the product's own
   stack (`vsteer.stack.running_stack`: redis-server, uvicorn, a solo Celery worker with the tiny
   model, local storage), polled every 20 ms to `succeeded`. In-process: `encode_images` + `fit` on
   the same model in this process, from the same PNG bytes (each decoded and encoded in turn, as
   `vsteer directions fit` runs it). Headline ratio: HTTP wall ÷ the fit's own work inside the worker
   (its `timings`: load, encode, fit), the same process and warm state, so what is left is what the
   service adds; HTTP ÷ in-process here is a cross-check (a second process on the same cores is a
   different engine: thread pools, warm-ups). Target ≤ 1.1.
2. *Stored vs inline*: one job with 4 embedding directions, cited as `{"id": "dir_..."}` (4 stored
   directions: a record check at submit, 4 storage reads in the worker) or given as inline vectors;
   both `POST /v1/jobs` with `Prefer: wait`. Median of the interleaved pairs' ratios. Target ≤ 1.02.

    python -m bench.direction_fits [--repeats 5] [--images 64] [--job-size default]
"""

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import interleave, median, table, test_image, tiny_model_dir, write_result
from vsteer.pictures import png_bytes

JOB_SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "default": {"width": 128, "height": 128, "num_frames": 8, "steps": 8},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--images", type=int, default=64, help="pictures the fit reads")
    parser.add_argument("--job-size", choices=sorted(JOB_SIZES), default="default", help="the job of part 2")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/direction_fits.json)")
    args = parser.parse_args(argv)

    import httpx
    import torch

    from vsteer.stack import running_stack
    from workers.fitting import encode_images, fit
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries
    from workers.tiny import TINY_DEFAULTS

    quiet_libraries()
    folder = tiny_model_dir()  # the worker builds the same one under the same VSTEER_CACHE_DIR
    registry = ModelRegistry({"tiny": ModelSpec(name="tiny", source=str(folder), **TINY_DEFAULTS)}, default="tiny")
    loaded = registry.get("tiny")
    pictures = [test_image(seed, (64, 64)) for seed in range(args.images)]
    files = [png_bytes(picture) for picture in pictures]
    decoder = ImageResolver()
    figures: dict[str, Any] = {"images": args.images, "job": JOB_SIZES[args.job_size]}
    with running_stack(model="tiny", webhooks=False) as stack, httpx.Client(base_url=stack.url, timeout=900) as http:
        auth = {"Authorization": f"Bearer {stack.api_key}"}
        refs = []
        for data in files:
            upload = {"file": ("p.png", data, "image/png")}
            refs.append(f"asset:{http.post('/v1/assets', files=upload, headers=auth).json()['id']}")

        # 1. the fit, over HTTP and in this process
        body = {"method": "pca", "model": "tiny", "images": refs, "k": 4}

        def over_http() -> dict[str, float]:
            made = http.post("/v1/directions", json=body, headers=auth).json()
            while True:
                fit = http.get(f"/v1/directions/fits/{made['id']}", headers=auth).json()
                if fit["status"] in ("succeeded", "failed", "canceled"):
                    break
                time.sleep(0.02)
            if fit["status"] != "succeeded":
                raise RuntimeError(f"the fit did not succeed: {fit}")
            timings = fit_timings(http, auth, fit)
            return {"in_worker": sum(timings.values())}

        def in_process() -> None:
            # as `vsteer directions fit` runs it: each file's bytes decoded, encoded, then the fit
            rows = [encode_images(loaded, [decoder.decode(data, "image")], "embedding", 64, 64) for data in files]
            fit("pca", torch.cat(rows), k=4)

        fits = interleave({"http": over_http, "in_process": in_process}, args.repeats)
        walls, inside = fits.series("http"), fits.series("http.in_worker")
        figures["fit"] = {
            "runs": fits.summary(),
            "http_vs_work_in_worker": fits.ratio("http", "http.in_worker"),
            "added_ms": median([w - i for w, i in zip(walls, inside, strict=True)]) * 1e3,
            "http_vs_in_process": fits.ratio("http", "in_process"),
        }

        # 2. four stored directions against the same four inline
        generator = torch.Generator().manual_seed(0)
        vectors = [torch.randn(32, generator=generator).tolist() for _ in range(4)]
        stored = [
            http.post("/v1/directions", json={"vector": v, "model": "tiny"}, headers=auth).json()["id"] for v in vectors
        ]
        job = {"model": "tiny", "seed": 3, "image": refs[0], "generation": JOB_SIZES[args.job_size]}
        cited = {**job, "directions": [{"source": {"id": d}, "strength": 0.5} for d in stored]}
        inline = {**job, "directions": [{"source": {"vector": v}, "strength": 0.5} for v in vectors]}
        wait = {**auth, "Prefer": "wait=600"}

        def submit(doc: dict[str, Any]) -> None:
            done = http.post("/v1/jobs", json=doc, headers=wait).json()
            if done["status"] != "succeeded":
                raise RuntimeError(f"the job did not succeed: {done}")

        jobs = interleave({"stored": lambda: submit(cited), "inline": lambda: submit(inline)}, args.repeats)
        figures["stored_vs_inline"] = {"runs": jobs.summary(), "ratio": jobs.ratio("stored", "inline")}
    figures["corpus"] = corpus_encodes(registry, pictures[:2], JOB_SIZES[args.job_size])
    figures["target"] = {"fit_http_vs_in_process": 1.1, "stored_vs_inline": 1.02}

    f, s = figures["fit"], figures["stored_vs_inline"]
    print(
        table(
            f"direction fits and stored directions (tiny model, {args.repeats} rounds)",
            ["measure", "A median s", "B median s", "ratio"],
            [
                [
                    f"pca k=4 on {args.images} images: HTTP ÷ work in the worker",
                    fits.median("http"),
                    fits.median("http.in_worker"),
                    f["http_vs_work_in_worker"],
                ],
                [
                    "the same: HTTP ÷ in this process",
                    fits.median("http"),
                    fits.median("in_process"),
                    f["http_vs_in_process"],
                ],
                ["job with 4 stored ÷ 4 inline directions", jobs.median("stored"), jobs.median("inline"), s["ratio"]],
            ],
        )
    )
    print(f"added by the service to a fit: {f['added_ms']:.0f} ms")
    c = figures["corpus"]
    print(
        f"geodesic keyframe jobs on a {c['corpus_images']}-image corpus: images encoded after the first job "
        f"{c['encoded_after'][0]}, after the second {c['encoded_after'][1]} ({c['seconds'][0]:.2f} s, then "
        f"{c['seconds'][1]:.2f} s)"
    )
    print(
        f"the same pictures as each job's own corpus: encoded by the first job {c['job_corpus_encoded'][0]}, by the "
        f"second {c['job_corpus_encoded'][1]} ({c['job_corpus_seconds'][0]:.2f} s, "
        f"then {c['job_corpus_seconds'][1]:.2f} s)"
    )
    print(f"\nwrote {write_result('direction_fits', figures, args.out)}")
    return figures


def corpus_encodes(registry: Any, keyframes: list[Any], size: dict[str, int]) -> dict[str, Any]:
    """Two geodesic keyframe jobs in this process on a model whose reference corpus is a folder of 64
    pictures: the corpus is encoded by the first and read from the cache by the second."""
    import base64
    import tempfile

    from api_schemas import JobRequest
    from bench.common import test_image
    from workers.corpus import EmbeddingCorpus
    from workers.engine import run_job
    from workers.images import ImageResolver

    folder = Path(tempfile.mkdtemp(prefix="vsteer-corpus-"))
    for seed in range(64):
        test_image(1000 + seed, (64, 64)).save(folder / f"{seed:03d}.png")
    corpus = EmbeddingCorpus(folder)
    pipeline = registry.get("tiny").pipeline
    pipeline.geodesic_corpus = corpus
    uris = ["data:image/png;base64," + base64.b64encode(png_bytes(k)).decode() for k in keyframes]
    job = JobRequest.model_validate(
        {
            "model": "tiny",
            "seed": 1,
            "keyframes": [{"image": uris[0], "at": 0.0}, {"image": uris[1], "at": 1.0}],
            "interpolation": "geodesic",
            "generation": size,
        }
    )
    encoded, seconds = [], []
    try:
        for _ in range(2):
            started = time.perf_counter()
            run_job(job, folder / "out", registry=registry, images=ImageResolver())
            seconds.append(time.perf_counter() - started)
            encoded.append(corpus.encoded)
    finally:
        pipeline.geodesic_corpus = None
    # The same pictures as the job's own corpus (as a tenant's uploads are cited): each job's report
    # says how many of them it encoded.
    own = job.model_copy(
        update={
            "corpus": [
                f"data:image/png;base64,{base64.b64encode(png_bytes(test_image(1000 + k, (64, 64)))).decode()}"
                for k in range(64)
            ]
        }
    )
    job_encoded, job_seconds = [], []
    for _ in range(2):
        started = time.perf_counter()
        outputs = run_job(own, folder / "own", registry=registry, images=ImageResolver())
        job_seconds.append(time.perf_counter() - started)
        job_encoded.append(outputs.manifest["interpolation"]["corpus"]["encoded"])
    return {
        "corpus_images": 64,
        "encoded_after": encoded,
        "seconds": seconds,
        "job_corpus_encoded": job_encoded,
        "job_corpus_seconds": job_seconds,
    }


def fit_timings(http: Any, auth: dict[str, str], fit: dict[str, Any]) -> dict[str, float]:
    """The fit's own stage timings, from its manifest (load, encode, fit)."""
    manifest = http.get(fit["manifest"]["url"], headers=auth)
    timings: dict[str, float] = manifest.json()["timings"]
    return timings


if __name__ == "__main__":
    main()
