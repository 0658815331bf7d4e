"""The Celery app and the worker settings keep the delivery guarantees DESIGN.md asks for."""

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from workers.celery_app import consumed_models, create_app
from workers.settings import WorkerSettings


def settings(**values) -> WorkerSettings:
    return WorkerSettings(**values)


def test_delivery_settings():
    s = settings(worker_models="tiny, svd-xt", job_time_limit_s=1800, max_queue_wait_s=3600)
    conf = create_app(s).conf

    assert conf.worker_pool == "solo" and conf.worker_concurrency == 1
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_cancel_long_running_tasks_on_connection_loss
    assert conf.broker_transport_options["visibility_timeout"] > 1800 + 3600
    assert [q.name for q in conf.task_queues] == ["gpu.tiny", "gpu.svd-xt"]
    assert conf.task_ignore_result


def test_visibility_timeout_below_the_longest_job_is_refused():
    with pytest.raises(ValidationError, match="delivered twice"):
        settings(job_time_limit_s=600, max_queue_wait_s=0, visibility_timeout_s=600)


PRODUCTION_WEBHOOK_SECRET = "whsec_cHJvZHVjdGlvbi1saWtlLXdlYmhvb2sta2V5"


def test_production_refuses_the_placeholder_files_secret():
    with pytest.raises(ValidationError, match="VSTEER_FILES_SECRET"):
        settings(environment="production", storage_backend="local", webhook_secret=PRODUCTION_WEBHOOK_SECRET)
    settings(
        environment="production",
        storage_backend="local",
        webhook_secret=PRODUCTION_WEBHOOK_SECRET,
        files_secret="a-real-secret",
    )


def test_s3_needs_a_bucket():
    with pytest.raises(ValidationError, match="BUCKET"):
        settings(storage_backend="s3")
    kind, kwargs = settings(storage_backend="s3", storage_s3_bucket="b", storage_s3_max_attempts=7).storage_kwargs()
    assert (kind, kwargs["bucket"], kwargs["max_attempts"]) == ("s3", "b", 7)


def test_worker_serves_the_default_model_unless_told():
    assert settings(default_model="svd-xt").queues == ["gpu.svd-xt"]


class FakeWorker:
    def __init__(self, app, consume_from):
        self.app = app
        app.amqp.queues.select(consume_from)


def test_models_loaded_at_start_follow_the_consumed_queues():
    app = create_app(settings(worker_models="tiny,svd-xt"))
    assert consumed_models(FakeWorker(app, ["gpu.svd-xt"])) == ["svd-xt"]
    assert consumed_models(FakeWorker(app, ["webhooks"])) == []


@pytest.mark.integration
def test_a_worker_that_cannot_load_its_model_stops_before_consuming(tmp_path):
    from tests.servers import spawn, start_redis

    redis = start_redis(tmp_path)
    try:
        env = {
            "VSTEER_REDIS_URL": redis.url,
            "VSTEER_MODELS": '{"broken": {"source": "/nonexistent/weights"}}',
            "VSTEER_WORKER_MODELS": "broken",
        }
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool", "solo",
                "-Q", "gpu.broken", "--without-gossip", "--without-mingle"]  # fmt: skip
        worker = spawn(argv, tmp_path / "worker.log", env=env, cwd=Path(__file__).resolve().parents[2])
        try:
            assert worker.proc.wait(90) != 0
        finally:
            worker.stop()
        log = (tmp_path / "worker.log").read_text()
        assert "cannot load models broken" in log
        assert "ready." not in log
    finally:
        redis.stop()
