"""What every benchmark shares: interleaved A/B timing, percentiles, the machine record, JSON output.

Every figure is a ratio of medians from interleaved runs (A B A B …) measured in one process run,
because the machines these run on are shared and noisy; absolute times count only on a GPU.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from vsteer.pictures import smooth_picture

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
PACKAGES = ("torch", "diffusers", "transformers", "celery", "redis", "fastapi", "uvicorn", "pydantic", "httpx")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Interleaved:
    """Seconds per run of each variant, collected A B A B … so drift hits every variant alike.

    `parts` holds what a variant reported about its own run (a dict of name → seconds it returned),
    e.g. the engine stages of a job, one list per part.
    """

    seconds: dict[str, list[float]] = field(default_factory=dict)
    parts: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return median(self.series(name))

    def series(self, name: str) -> list[float]:
        """Seconds of a variant (`name`) or of one part of it (`name.part`)."""
        if name in self.seconds:
            return self.seconds[name]
        variant, part = name.split(".", 1)
        return self.parts[variant][part]

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median of the per-round ratios: each pair ran back to back, so it cancels slow drift."""
        pairs = zip(self.series(numerator), self.series(denominator), strict=True)
        return median([a / b for a, b in pairs])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, values in self.seconds.items():
            out[name] = {"median_s": median(values), "min_s": min(values), "max_s": max(values), "runs": len(values)}
            for part, part_values in self.parts.get(name, {}).items():
                out[name][f"{part}_median_s"] = median(part_values)
        return out


def interleave(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> Interleaved:
    """Run each variant `warmup` times untimed, then `repeats` rounds of every variant in turn.

    The order inside a round alternates (A B, B A, …) so neither variant always runs second.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    result = Interleaved({name: [] for name in names}, {name: {} for name in names})
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            reported = variants[name]()
            result.seconds[name].append(time.perf_counter() - start)
            if isinstance(reported, dict):
                for part, seconds in reported.items():
                    result.parts[name].setdefault(part, []).append(float(seconds))
    return result


def machine() -> dict[str, Any]:
    """The machine and library versions a figure was measured with."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        versions["redis-server"] = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5
        ).stdout.split()[2]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        versions["redis-server"] = None
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "versions": versions,
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
            info["versions"]["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def command() -> str:
    """The command line that produced this run, as `python -m bench.<name> …` when run as a module."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = ["-m", spec.name] if spec is not None else [sys.argv[0]]
    return " ".join(["python", *program, *sys.argv[1:]])


def write_result(name: str, figures: dict[str, Any], out: Path | None) -> Path:
    """Write `{name, command, machine, figures, measured_at}` as JSON; returns the path."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": command(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "figures": figures,
    }
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain text table (markdown pipes, so it pastes into docs/benchmarks.md)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return str(value)

    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def test_image(seed: int, size: tuple[int, int] = (128, 96)) -> PIL.Image.Image:
    """A smooth random picture (`vsteer.pictures.smooth_picture`) at the benchmarks' default size."""
    return smooth_picture(seed, size)


def tiny_model_dir() -> Path:
    """The tiny SVD folder, built once under VSTEER_CACHE_DIR (as the registry builds it)."""
    from workers.settings import EngineSettings
    from workers.tiny import save_tiny_svd

    folder = EngineSettings().cache_dir.expanduser() / "tiny-svd"
    if not (folder / "model_index.json").is_file():
        save_tiny_svd(folder)
    return folder


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), MiB, from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
