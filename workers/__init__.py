"""Celery app and tasks, the job runner, the engine, the model registry, the steerable SVD pipeline."""

import os
import sys

# The libraries under the engine speak only of errors unless told otherwise (transformers' notice
# that torchvision is missing is not news to anyone reading a worker's log), and draw no progress
# bars, carriage returns and all, into a log file; a terminal still gets its bars.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if not sys.stderr.isatty():
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
