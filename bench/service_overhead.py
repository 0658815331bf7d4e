"""(b) Service overhead: POST → succeeded through the API, Redis, a worker and storage, vs the engine
alone (`run_job` in this process) on the same job.

The stack is the product's own (`vsteer.stack.start_stack`: redis-server, uvicorn, a solo Celery
worker with the tiny model, local storage). The service round trip is one `POST /v1/jobs` with
`Prefer: wait=600`, which answers when the job is terminal. Interleaved with the engine run, per job
size. Reported: the ratio and the added milliseconds (service − engine, medians of pairs). Target:
≤ 1.05 for jobs of ≥ 10 s.

    python -m bench.service_overhead
"""

import argparse
import base64
import tempfile
from pathlib import Path
from typing import Any

from bench.common import interleave, median, png_bytes, table, test_image, tiny_model_dir, write_result

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "short": {"width": 64, "height": 64, "num_frames": 6, "steps": 6},
    "long": {"width": 256, "height": 192, "num_frames": 12, "steps": 8},
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
    with running_stack(webhooks=False) as stack, httpx.Client(base_url=stack.url, timeout=900) as http:
        headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=600"}
        for name in args.sizes:
            doc = {"model": "tiny", "seed": 3, "image": image, "generation": SIZES[name]}
            job = JobRequest.model_validate(doc)

            def service(doc: dict[str, Any] = doc) -> None:
                response = http.post("/v1/jobs", json=doc, headers=headers)
                body = response.json()
                if response.status_code != 200 or body["status"] != "succeeded":
                    raise RuntimeError(f"job did not succeed within the wait: {response.status_code} {body}")

            def engine(job: JobRequest = job) -> None:
                from workers.runner import run_job

                run_job(job, work / "engine", registry=registry, images=ImageResolver())

            result = interleave({"service": service, "engine": engine}, args.repeats)
            added = [s - e for s, e in zip(result.seconds["service"], result.seconds["engine"], strict=True)]
            figures["sizes"][name] = {
                **SIZES[name],
                "runs": result.summary(),
                "service_vs_engine": result.ratio("service", "engine"),
                "added_ms": median(added) * 1e3,
            }
            f = figures["sizes"][name]
            rows.append([name, result.median("engine"), result.median("service"), f["service_vs_engine"],
                         f["added_ms"]])  # fmt: skip
    figures["target"] = {"service_vs_engine_for_jobs_of_10s": 1.05}
    print(
        table(
            f"service overhead (tiny model, {args.repeats} rounds)",
            ["job", "engine s", "POST → succeeded s", "ratio", "added ms"],
            rows,
        )
    )
    print(f"\nwrote {write_result('service_overhead', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
