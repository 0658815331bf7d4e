"""CPU per submission: `POST /v1/jobs` through the ASGI app in this process, one at a time, no HTTP.

Less sensitive than `bench.api_load` to what else the machine runs: it counts this process's CPU
time (`time.process_time`) per request, against a private redis-server, with the rate limit and
active-job cap on as in `bench.api_load`. Use it to tell a change in the code from a change in the
machine: run it in two checkouts (e.g. `git worktree add /tmp/old <commit>`), alternating.

    python -m bench.api_cpu
    python -m bench.api_cpu --requests 3000 --rounds 3
"""

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api_load import job_body
from bench.common import median, table, write_result
from bench.servers import new_stack, start_redis


async def submissions(app: Any, key: str, body: bytes, count: int) -> tuple[float, float]:
    """(wall, CPU) seconds per submission over `count` sequential submissions."""
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode()),
               (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]  # fmt: skip

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/jobs", "raw_path": b"/v1/jobs", "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                 "state": {}}  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [202]:
            raise RuntimeError(f"submission answered {statuses}")

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        await one()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="submissions per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/api_cpu.json)")
    args = parser.parse_args(argv)

    with new_stack(Path(tempfile.mkdtemp(prefix="vsteer-bench-")), ["sim"]) as stack:
        start_redis(stack)
        env = {**stack.env, "VSTEER_RATE_LIMIT_PER_S": "1e9", "VSTEER_RATE_LIMIT_BURST": "1000000000",
               "VSTEER_MAX_ACTIVE_JOBS_PER_TENANT": "1000000000"}  # fmt: skip
        from service.app import create_app
        from service.settings import Settings

        saved = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith("VSTEER_")})
        try:
            settings = Settings()  # read from the stack's environment, which is then put back
        finally:
            os.environ.clear()
            os.environ.update(saved)
        app = create_app(settings)
        body = job_body("sim")

        async def run() -> list[tuple[float, float]]:
            async with app.router.lifespan_context(app):
                await submissions(app, stack.api_key, body, 200)  # warm-up
                return [await submissions(app, stack.api_key, body, args.requests) for _ in range(args.rounds)]

        try:
            import uvloop

            rounds = uvloop.run(run())
        except ImportError:
            rounds = asyncio.run(run())

    walls, cpus = [w for w, _ in rounds], [c for _, c in rounds]
    figures = {
        "requests_per_round": args.requests,
        "wall_us": [w * 1e6 for w in walls],
        "cpu_us": [c * 1e6 for c in cpus],
        "median_wall_us": median(walls) * 1e6,
        "median_cpu_us": median(cpus) * 1e6,
    }
    rows = [[i + 1, w * 1e6, c * 1e6] for i, (w, c) in enumerate(rounds)]
    print(table("POST /v1/jobs in process (ASGI, no HTTP), one at a time", ["round", "wall µs", "CPU µs"], rows))
    print(f"\nwrote {write_result('api_cpu', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
