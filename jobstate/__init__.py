"""Job state in Redis, shared by the HTTP service and the workers: status, progress, cancel flags, and the
task names and queues both sides send and consume by."""
