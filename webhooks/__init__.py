"""Webhooks per Standard Webhooks v1: the messages a job sends, their signing and their delivery.

A message is POSTed as JSON with three headers:

- `webhook-id`: `msg_<job_id>_<status>` (`msg_<job_id>_progress_<stage>_<step>` for progress), the
  same on every retry and redelivery (receivers dedupe on it);
- `webhook-timestamp`: Unix seconds of this attempt;
- `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where `key` is
  the base64-decoded part of the secret after `whsec_`.

The body is `{"type": "job.started" | "job.progress" | "job.succeeded" | "job.failed" | "job.canceled",
"timestamp": <ISO 8601>, "data": <the job resource>}`; its URLs are presigned when the message is built
and expire like any other (each result file says when, `expires_at`). `webhook.events` names the types
it wants (`completed` is the older name of `succeeded`). A job whose `webhook.events` has `started` gets
`job.started` when a worker starts it, once per run; with `progress`, `job.progress` when each stage
starts and at each quarter of its denoising steps (at most 9 per run; see
`messages.progress_worth_sending`); they are separate deliveries, so a receiver may see them out of
order and should read `data.progress`.

- `messages`: the message of a job and `enqueue_job_webhook`, how a worker (or the API, for a job
  canceled while queued) sends one;
- `signing`: `sign` and `verify`;
- `ssrf_guard`: which URLs may be called;
- `delivery`: one signed attempt and the backoff between attempts;
- `celery_app`: the light Celery worker that delivers them (task `vsteer.deliver_webhook.v1`, queue
  `webhooks`), retrying with backoff;
- `settings`: the secrets and delivery limits (`VSTEER_WEBHOOK_*`).
"""
