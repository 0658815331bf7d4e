"""The compose file is valid and keeps the properties the deployment relies on."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")

needs_compose = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def compose_config(*args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "config", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@needs_compose
def test_compose_file_is_valid():
    result = compose_config("-q")
    assert result.returncode == 0, result.stderr


@needs_compose
def test_compose_services_keep_their_guarantees():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with moto[server]

    result = compose_config()
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]

    assert {"redis", "seaweedfs", "create-bucket", "api", "webhooks", "worker"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert any(str(v).endswith(":/models") or v.get("target") == "/models" for v in _volumes(worker))
    assert worker["command"][worker["command"].index("--pool") + 1] == "solo"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert services["api"]["build"]["dockerfile"] == "deploy/Dockerfile.api"


def _volumes(service: dict) -> list:
    return [v if isinstance(v, dict) else {"target": str(v).split(":")[1]} for v in service.get("volumes", [])]


def test_api_image_installs_no_torch():
    dockerfile = (ROOT / "deploy" / "Dockerfile.api").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs == ['    && pip install ".[api]" \\']
    # The build itself fails if torch became importable through a transitive dependency.
    assert "find_spec('torch') is not None" in dockerfile


@needs_compose
def test_compose_serves_the_trained_toy_model_that_the_worker_image_carries():
    yaml = pytest.importorskip("yaml")

    result = compose_config()
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    worker = services["worker"]
    assert worker["environment"]["VSTEER_WORKER_MODELS"] == "toy"
    assert worker["command"][worker["command"].index("-Q") + 1] == "gpu.toy"
    assert services["api"]["environment"]["VSTEER_DEFAULT_MODEL"] == "toy"
    # the image holds the weights where the package is told to find them
    dockerfile = (ROOT / "deploy" / "Dockerfile.worker").read_text()
    assert "COPY models/toy ./models/toy" in dockerfile and "WORKDIR /app" in dockerfile
    assert "VSTEER_TOY_FOLDER=/app/models/toy" in dockerfile
    assert (ROOT / "models" / "toy" / "model_index.json").is_file()


def test_an_installed_package_finds_the_toy_model_where_the_environment_says(tmp_path):
    code = "import workers.toy as t; print(t.TOY_FOLDER, t.toy_available())"
    env = {"PATH": "/usr/bin:/bin", "VSTEER_TOY_FOLDER": str(tmp_path)}
    told = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert told.stdout.split() == [str(tmp_path), "False"]
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert default.stdout.split() == [str(ROOT / "models" / "toy"), "True"]
