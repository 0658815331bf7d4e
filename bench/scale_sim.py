"""(3) Scale simulation: N simulated GPU workers behind one API and one Redis.

Eight worker processes (`bench.sim_worker`: the real Celery worker, job state and storage, with the
pipeline replaced by a fixed service time) start once; worker i consumes the queues of models
`simN` for every N > i, so jobs of model `simN` are served by exactly N workers. For N = 1, 2, 4, 8
the load generator (its own process) submits `--jobs-per-worker` × N jobs at once and the run ends
when all have succeeded. jobs/s = jobs ÷ (first submit → last success); scaling efficiency =
jobs/s(N) ÷ (N × jobs/s(1)). Target ≥ 0.9 up to 8.

Run it at a GPU-like service time and at a short one that stresses the shared parts: when the short
one stops scaling, the CPU time the API, Redis and the workers' own bookkeeping need per job is the
limit (see docs/benchmarks.md for which).

    python -m bench.scale_sim --service-s 1.0
"""

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api_load import job_body, load
from bench.common import table, write_result
from bench.servers import TENANT, new_stack, start_api, start_redis, start_worker

COUNTS = (1, 2, 4, 8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service-s", type=float, nargs="+", default=[1.0, 0.1], help="simulated seconds per job")
    parser.add_argument("--jobs-per-worker", type=int, default=6)
    parser.add_argument("--steps", type=int, default=25, help="progress writes per job (one per denoising step)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/scale_sim.json)")
    args = parser.parse_args(argv)

    from jobstate.queues import queue_for
    from jobstate.store import JobStore

    runs: dict[str, Any] = {}
    for service_s in args.service_s:
        with new_stack(Path(tempfile.mkdtemp(prefix="vsteer-bench-")), [f"sim{n}" for n in COUNTS]) as stack:
            # 1. Redis, the API, eight simulated workers (started one at a time: 2 cores)
            start_redis(stack)
            start_api(stack)
            env = {"VSTEER_SIM_SERVICE_S": str(service_s), "VSTEER_SIM_STEPS": str(args.steps)}
            for i in range(max(COUNTS)):
                models = [f"sim{n}" for n in COUNTS if n > i]
                start_worker(stack, f"sim{i}", [queue_for(m) for m in models], app="bench.sim_worker",
                             env={**env, "VSTEER_WORKER_MODELS": ",".join(models)})  # fmt: skip
            store = JobStore.from_url(stack.redis_url)

            # 2. each N: submit N × jobs at once, wait for all to succeed
            rows = {}
            for n in COUNTS:
                body = stack.root / f"body{n}.json"
                body.write_bytes(job_body(f"sim{n}"))
                jobs = n * args.jobs_per_worker
                started = time.perf_counter()
                ids = load(stack, body, concurrency=min(jobs, 16), duration=0, count=jobs, ids=True)["ids"]
                submit_s = time.perf_counter() - started
                pending, last = set(ids), started
                while pending and time.perf_counter() - started < 600:
                    for job_id in list(pending):
                        record = store.get(TENANT, job_id)
                        if record is not None and record.status.is_terminal():
                            pending.discard(job_id)
                            last = time.perf_counter()
                    time.sleep(0.02)
                elapsed = last - started
                rows[n] = {"jobs": jobs, "unfinished": len(pending), "seconds": elapsed, "submit_s": submit_s,
                           "jobs_per_s": (jobs - len(pending)) / elapsed}  # fmt: skip
            base = rows[1]["jobs_per_s"]
            for n, row in rows.items():
                row["ideal_jobs_per_s"] = n / service_s
                row["efficiency"] = row["jobs_per_s"] / (n * base)
                row["efficiency_vs_service_time"] = row["jobs_per_s"] / row["ideal_jobs_per_s"]
            runs[str(service_s)] = rows

    figures = {"counts": list(COUNTS), "jobs_per_worker": args.jobs_per_worker, "steps": args.steps, "runs": runs,
               "target": {"efficiency": 0.9}}  # fmt: skip
    table_rows = [
        [
            service,
            n,
            r["jobs"],
            r["jobs_per_s"],
            r["ideal_jobs_per_s"],
            r["efficiency"],
            r["efficiency_vs_service_time"],
        ]
        for service, rows in runs.items()
        for n, r in rows.items()
    ]
    print(
        table(
            "simulated GPU workers behind one API and Redis",
            ["service s", "workers", "jobs", "jobs/s", "ideal jobs/s", "efficiency vs N×(N=1)", "vs N/service"],
            table_rows,
        )
    )
    print(json.dumps({s: {n: r["unfinished"] for n, r in rows.items()} for s, rows in runs.items()}))
    print(f"\nwrote {write_result('scale_sim', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
