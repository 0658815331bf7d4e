"""A load generator in its own process: `POST /v1/jobs` over keep-alive HTTP/1.1 connections.

A minimal asyncio client (no HTTP library) so that the generator costs as little CPU as possible on
the machine it shares with the API and Redis. Writes one JSON object to `--result` (stdout when
left out): latencies (seconds), status counts, job ids (with `--ids`), elapsed seconds.

    python -m bench.loadgen --url http://127.0.0.1:8000 --key KEY --body body.json --concurrency 32 --duration 10
"""

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


async def connection(
    host: str, port: int, request: bytes, stop: Any, out: dict[str, Any], keep_ids: bool, remaining: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while not stop():
            if remaining[0] <= 0:
                return
            remaining[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - start)
            status = head[9:12].decode()
            out["statuses"][status] = out["statuses"].get(status, 0) + 1
            if keep_ids and status in ("200", "202"):
                out["ids"].append(json.loads(body)["id"])
    finally:
        writer.close()


async def run(url: str, key: str, body: bytes, concurrency: int, duration: float, count: int, keep_ids: bool) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out: dict[str, Any] = {"latencies": [], "statuses": {}, "ids": []}
    started = time.perf_counter()
    deadline = started + duration if duration > 0 else float("inf")
    remaining = [count if count > 0 else 1 << 62]
    await asyncio.gather(
        *(
            connection(host, port, request, lambda: time.perf_counter() > deadline, out, keep_ids, remaining)
            for _ in range(concurrency)
        )
    )
    out["elapsed_s"] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="POST /v1/jobs under concurrent load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", type=Path, required=True, help="file holding the JSON job document")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: until --count requests)")
    parser.add_argument("--count", type=int, default=0, help="requests in all (0: until --duration)")
    parser.add_argument("--ids", action="store_true", help="report the created job ids")
    parser.add_argument("--result", type=Path, default=None, help="JSON file to write (default: stdout)")
    args = parser.parse_args()
    body = args.body.read_bytes()
    main_coro = run(args.url, args.key, body, args.concurrency, args.duration, args.count, args.ids)
    try:
        import uvloop  # the cheaper event loop, where installed: the generator shares the CPUs it loads

        result = uvloop.run(main_coro)
    except ImportError:
        result = asyncio.run(main_coro)
    if args.result is not None:
        # A file, not a pipe: the event loop may leave stdout non-blocking, and a pipe then takes
        # only part of a large write.
        args.result.write_text(json.dumps(result))
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
