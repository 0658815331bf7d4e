"""The HTTP edge: FastAPI routes, auth, job state, enqueue by task name."""
