"""deploy/compose_gpus.py: one GPU worker service per GPU, each reserving its GPU alone, validated
with `docker-compose config` on top of docker-compose.yml."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_compose import COMPOSE, ROOT, _volumes, needs_compose

SCRIPT = ROOT / "deploy" / "compose_gpus.py"


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def merged(override: Path) -> dict:
    yaml = pytest.importorskip("yaml")
    assert COMPOSE is not None
    result = subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "-f", str(override), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


@needs_compose
@pytest.mark.parametrize(("args", "gpus"), [(["3"], ["0", "1", "2"]), (["--ids", "1,3"], ["1", "3"])])
def test_each_gpu_gets_a_worker_that_reserves_it_alone(tmp_path: Path, args: list[str], gpus: list[str]):
    result = generate(*args)
    assert result.returncode == 0, result.stderr
    override = tmp_path / "docker-compose.gpus.yml"
    override.write_text(result.stdout)
    services = merged(override)

    workers = {name: s for name, s in services.items() if name.startswith("worker-gpu")}
    assert sorted(workers) == sorted(f"worker-gpu{g}" for g in gpus)
    hostnames = set()
    for gpu in gpus:
        worker = workers[f"worker-gpu{gpu}"]
        # exactly one device request, naming this GPU (no `count`, which would take any GPU)
        assert worker["deploy"]["resources"]["reservations"]["devices"] == [
            {"driver": "nvidia", "device_ids": [gpu], "capabilities": ["gpu"]}
        ]
        assert worker["environment"]["NVIDIA_VISIBLE_DEVICES"] == gpu
        command = worker["command"]
        assert command[command.index("--pool") + 1] == "solo"
        assert command[command.index("-Q") + 1] == services["worker"]["command"][command.index("-Q") + 1]
        hostnames.add(command[command.index("--hostname") + 1])
        assert any(v.get("target") == "/models" for v in _volumes(worker))  # the shared model cache
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert len(hostnames) == len(gpus)  # Celery worker names are unique
    # the single-GPU worker is out of the default set, or it would reserve a GPU of its own as well
    assert services["worker"]["profiles"] == ["single-gpu"]


def test_bad_gpu_lists_are_refused():
    for args, message in [
        (["0"], "at least 1"),
        (["--ids", "0,0"], "names a GPU twice"),
        (["--ids", "a,b"], "GPU indexes separated by commas"),
        (["2", "--ids", "0,1"], "not both"),
        ([], "not both"),
    ]:
        result = generate(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
