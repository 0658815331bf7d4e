"""Celery app and tasks, the job runner, the engine, the model registry, the steerable SVD pipeline."""
