"""Celery app and tasks, the job runner, the model registry, the steerable SVD pipeline."""
