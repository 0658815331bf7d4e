"""A GPU worker's liveness probe: is its heartbeat file fresh?

    python -m workers.liveness /tmp/vsteer-heartbeat --max-age 60

Exits 0 when the file was touched within `--max-age` seconds, 1 otherwise (missing, or stale). The
worker's heartbeat thread touches it every `VSTEER_HEARTBEAT_S` once the models are loaded
(`VSTEER_HEARTBEAT_FILE`, `workers.celery_app`), so a worker still loading has none yet: an
orchestrator gives loading its own, longer allowance (Kubernetes' startup probe, `deploy/k8s`). A stuck
process stops touching it and is restarted; its job was already taken back by the reaper once its
lease expired. Standard library only: the probe runs every few seconds and must not load the engine.
"""

import argparse
import sys
import time
from pathlib import Path


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since `path` was last touched, or None when it does not exist."""
    try:
        touched = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - touched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.liveness", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the worker's VSTEER_HEARTBEAT_FILE")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    if not args.max_age > 0:
        parser.error(f"--max-age must be more than 0 seconds, got {args.max_age:g}")
    age = heartbeat_age(args.file)
    if age is None:
        sys.stderr.write(f"no heartbeat: {args.file} does not exist\n")
        return 1
    if age > args.max_age:
        sys.stderr.write(f"stale heartbeat: {args.file} was last touched {age:.0f} s ago (> {args.max_age:g} s)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
