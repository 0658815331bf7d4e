"""(b) Service overhead: POST → succeeded through the API, Redis, a worker and storage, vs the engine
alone (`run_job`) on the same job.

The stack is the product's own (`vsteer.stack.start_stack`: redis-server, uvicorn, a solo Celery
worker with the tiny model, local storage). The service round trip is one `POST /v1/jobs` with
`Prefer: wait=600`, which answers when the job is terminal. The engine alone is measured twice:

- *in the worker*: the job's own `run_job` time, which the worker records in the result
  (`metrics.timings.total`); the same process, warm state and thread settings as the service run,
  so service − that is exactly what the service adds. The headline ratio uses it.
- *in this process*: `run_job` here, interleaved with the service runs. A second process on the
  same 2 cores is not the same engine: thread pools and first-use warm-ups differ, so this column
  is a cross-check only.

Reported per job size: the ratio and the added milliseconds (medians of pairs). Target: ≤ 1.05 for
jobs of ≥ 10 s.

    python -m bench.service_overhead
"""

import argparse
import base64
import tempfile
from pathlib import Path
from typing import Any

from bench.common import interleave, median, table, test_image, tiny_model_dir, write_result
from vsteer.pictures import png_bytes

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "short": {"width": 64, "height": 64, "num_frames": 6, "steps": 6},
    "long": {"width": 256, "height": 192, "num_frames": 16, "steps": 12},  # ≥ 10 s on 2 CPU cores
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["short", "long"])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/service_overhead.json)")
    args = parser.parse_args(argv)

    import httpx

    from api_schemas import JobRequest
    from vsteer.stack import running_stack
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries
    from workers.tiny import TINY_DEFAULTS

    quiet_libraries()
    folder = tiny_model_dir()  # the worker builds the same one under the same VSTEER_CACHE_DIR
    registry = ModelRegistry({"tiny": ModelSpec(name="tiny", source=str(folder), **TINY_DEFAULTS)}, default="tiny")
    registry.get("tiny")
    image = "data:image/png;base64," + base64.b64encode(png_bytes(test_image(0))).decode()
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    figures: dict[str, Any] = {"sizes": {}}
    rows = []
    with running_stack(model="tiny", webhooks=False) as stack, httpx.Client(base_url=stack.url, timeout=900) as http:
        headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=600"}
        for name in args.sizes:
            doc = {"model": "tiny", "seed": 3, "image": image, "generation": SIZES[name]}
            job = JobRequest.model_validate(doc)

            def service(doc: dict[str, Any] = doc) -> dict[str, float]:
                response = http.post("/v1/jobs", json=doc, headers=headers)
                body = response.json()
                if response.status_code != 200 or body["status"] != "succeeded":
                    raise RuntimeError(f"job did not succeed within the wait: {response.status_code} {body}")
                return {"in_worker": float(body["result"]["metrics"]["timings"]["total"])}

            def engine(job: JobRequest = job) -> None:
                from workers.engine import run_job

                run_job(job, work / "engine", registry=registry, images=ImageResolver())

            result = interleave({"service": service, "engine": engine}, args.repeats)
            walls, inside = result.series("service"), result.series("service.in_worker")
            figures["sizes"][name] = {
                **SIZES[name],
                "runs": result.summary(),
                "service_vs_engine_in_worker": result.ratio("service", "service.in_worker"),
                "added_ms": median([w - e for w, e in zip(walls, inside, strict=True)]) * 1e3,
                "service_vs_engine_in_this_process": result.ratio("service", "engine"),
            }
            f = figures["sizes"][name]
            rows.append([name, result.median("service.in_worker"), result.median("service"),
                         f["service_vs_engine_in_worker"], f["added_ms"], result.median("engine"),
                         f["service_vs_engine_in_this_process"]])  # fmt: skip
    figures["target"] = {"service_vs_engine_for_jobs_of_10s": 1.05}
    print(
        table(
            f"service overhead (tiny model, {args.repeats} rounds)",
            ["job", "engine in worker s", "POST → succeeded s", "ratio", "added ms", "engine here s", "ratio to it"],
            rows,
        )
    )
    print(f"\nwrote {write_result('service_overhead', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
