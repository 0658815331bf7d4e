"""(d) The API under load: `POST /v1/jobs` submissions/s and p50/p99 latency; enqueue → task start.

Redis and the API (uvicorn, each of `--api-processes`) run as their own processes; the load generator
(`bench.loadgen`) is a third, with each of `--concurrency` keep-alive connections (a closed loop: a
connection sends its next request when the answer arrives), for `--duration` seconds after a short
warm-up. The API runs as deployed: the per-key rate limit and the per-tenant active-job cap are on
(set high enough not to refuse), so their Redis calls are part of every request. No GPU worker
consumes the load's queue (its jobs stay queued), so the figure is the API + Redis alone. Then one
simulated worker (`bench.sim_worker`, zero service time) is started on a second, empty model queue
and `--probe` jobs are submitted one at a time: record created → task started (job state's
`created_at` → `started_at`) gives the queue hop.

Targets: ≥ 1,500 jobs/s with p99 ≤ 20 ms on a 2-core machine; enqueue → task start p50 ≤ 5 ms.

    python -m bench.api_load
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, median, percentile, table, test_image, write_result
from bench.servers import TENANT, new_stack, start_api, start_redis, start_worker
from vsteer.pictures import png_bytes


def job_body(model: str) -> bytes:
    import base64

    image = "data:image/png;base64," + base64.b64encode(png_bytes(test_image(0, (64, 64)))).decode()
    doc = {"model": model, "seed": 1, "image": image, "generation": {"num_frames": 4, "width": 64, "height": 64}}
    return json.dumps(doc).encode()


def load(stack: Any, body_file: Path, concurrency: int, duration: float, count: int = 0, ids: bool = False) -> dict:
    argv = [sys.executable, "-m", "bench.loadgen", "--url", stack.api_url, "--key", stack.api_key,
            "--body", str(body_file), "--concurrency", str(concurrency), "--duration", str(duration),
            "--count", str(count), "--result", str(stack.root / "load.json")] + (["--ids"] if ids else [])  # fmt: skip
    subprocess.run(argv, capture_output=True, cwd=REPO_ROOT, env=stack.env, check=True, timeout=600)
    return json.loads((stack.root / "load.json").read_text())


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=ints, default=[8, 16, 32], help="connections, comma separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per row")
    parser.add_argument("--api-processes", type=ints, default=[1, 2], help="uvicorn processes, comma separated")
    parser.add_argument("--probe", type=int, default=100, help="jobs for enqueue → task start")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/api_load.json)")
    args = parser.parse_args(argv)

    from jobstate.store import JobStore

    loads: list[dict[str, Any]] = []
    with new_stack(Path(tempfile.mkdtemp(prefix="vsteer-bench-")), ["sim", "probe"]) as stack:
        # Limits on, as deployed, but high enough never to refuse the load.
        stack.env |= {"VSTEER_RATE_LIMIT_PER_S": "1e9", "VSTEER_RATE_LIMIT_BURST": "1000000000",
                      "VSTEER_MAX_ACTIVE_JOBS_PER_TENANT": "1000000000"}  # fmt: skip
        # 1. Redis and the API; the load generator is its own process
        start_redis(stack)
        body_file = stack.root / "body.json"
        body_file.write_bytes(job_body("sim"))
        for processes in args.api_processes:
            api = start_api(stack, processes)
            load(stack, body_file, max(args.concurrency), duration=2.0)  # warm-up: connections, caches
            for concurrency in args.concurrency:
                result = load(stack, body_file, concurrency, duration=args.duration)
                latencies = result["latencies"]
                ok = sum(n for status, n in result["statuses"].items() if status in ("200", "202"))
                loads.append({
                    "api_processes": processes,
                    "concurrency": concurrency,
                    "duration_s": result["elapsed_s"],
                    "requests": len(latencies),
                    "statuses": result["statuses"],
                    "jobs_per_s": ok / result["elapsed_s"],
                    "latency_ms": {"p50": percentile(latencies, 50) * 1e3, "p99": percentile(latencies, 99) * 1e3,
                                   "max": max(latencies) * 1e3},
                })  # fmt: skip
            if processes != args.api_processes[-1]:
                api.stop()
                stack.procs.remove(api)

        # 2. the queue hop: one simulated worker with no service time, jobs one at a time
        store = JobStore.from_url(stack.redis_url)
        probe_env = {"VSTEER_WORKER_MODELS": "probe", "VSTEER_SIM_SERVICE_S": "0", "VSTEER_SIM_STEPS": "1"}
        start_worker(stack, "sim0", ["gpu.probe"], app="bench.sim_worker", env=probe_env)
        probe_file = stack.root / "probe.json"
        probe_file.write_bytes(job_body("probe"))
        # One job at a time: each is submitted only after the previous one finished, so the hop is
        # the queue's own latency, not the wait behind earlier jobs.
        hops = []
        deadline = time.monotonic() + 300
        for _ in range(args.probe):
            (job_id,) = load(stack, probe_file, 1, duration=0, count=1, ids=True)["ids"]
            while time.monotonic() < deadline:
                record = store.get(TENANT, job_id)
                if record is not None and record.status.is_terminal():
                    if record.started_at is not None:
                        hops.append((record.started_at - record.created_at).total_seconds())
                    break
                time.sleep(0.002)

    figures = {
        "loads": loads,
        "enqueue_to_start_ms": {"p50": median(hops) * 1e3, "p99": percentile(hops, 99) * 1e3, "n": len(hops),
                                "note": "job created_at → started_at (the task is queued by the create script)"},
        "targets": {"jobs_per_s": 1500, "p99_ms": 20, "enqueue_to_start_p50_ms": 5},
    }  # fmt: skip
    rows = [
        [r["api_processes"], r["concurrency"], r["jobs_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p99"],
         ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))]
        for r in loads
    ]  # fmt: skip
    print(
        table(
            "POST /v1/jobs under load (loopback; generator, API and Redis share the machine)",
            ["API procs", "connections", "jobs/s", "p50 ms", "p99 ms", "answers"],
            rows,
        )
    )
    hop = figures["enqueue_to_start_ms"]
    print(f"\nenqueue → task start: p50 {hop['p50']:.2f} ms, p99 {hop['p99']:.2f} ms over {hop['n']} jobs")
    print(f"\nwrote {write_result('api_load', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
