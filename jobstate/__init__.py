"""Job state in Redis, shared by the HTTP service and the workers: status, progress, cancel flags."""
