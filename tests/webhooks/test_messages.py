"""Which job events make a webhook message, and what it carries."""

import json

from jobstate.records import StoredResult, new_job_id
from jobstate.store import JobStore
from webhooks.messages import job_webhook_message, progress_worth_sending


def test_message_is_built_only_for_requested_terminal_events(store: JobStore) -> None:
    job_id = new_job_id("t1")
    request = {"image": "asset:a", "webhook": {"url": "https://example.com/h", "events": ["failed"]}}
    store.create(job_id, "t1", "svd-xt", request)
    store.mark_running(job_id)
    record = store.succeed(job_id, StoredResult()).record
    assert record is not None and job_webhook_message(record, str) is None


def test_progress_is_sent_when_a_stage_starts_and_at_each_quarter_of_the_steps() -> None:
    reports = [("load", 0, 1), ("encode", 0, 1), *[("denoise", i, 25) for i in range(26)], ("decode", 0, 1)]
    reports += [("video", 0, 1), ("video", 1, 1)]
    sent, last = [], None
    for stage, step, total in reports:
        marker = progress_worth_sending(stage, step, total, last)
        if marker is not None:
            sent.append((stage, step))
            last = marker
    denoise = [("denoise", s) for s in (0, 7, 13, 19, 25)]
    assert sent == [("load", 0), ("encode", 0), *denoise, ("decode", 0), ("video", 0)]  # 9 at most


def test_progress_messages_only_for_jobs_that_asked(store: JobStore) -> None:
    import dataclasses

    from api_schemas import Progress

    for events, expected in [(["progress"], True), (["completed"], False)]:
        job_id = new_job_id("t1")
        store.create(
            job_id,
            "t1",
            "svd-xt",
            {"image": "a", "webhook": {"url": "https://e.com/h", "events": events}},
        )
        record = store.mark_running(job_id).record
        assert record is not None and job_webhook_message(record, str) is None  # no progress yet
        at = dataclasses.replace(record, progress=Progress(stage="denoise", step=3, total=10, fraction=0.3))
        message = job_webhook_message(at, str)
        assert (message is not None) is expected
        if message is not None:
            assert message.msg_id == f"msg_{job_id}_progress_denoise_3"
            body = json.loads(message.body)
            assert body["type"] == "job.progress" and body["data"]["progress"]["step"] == 3


def test_succeeded_and_its_older_name_completed_ask_for_the_same_message(store: JobStore) -> None:
    for events, sent in [(["succeeded"], True), (["completed"], True), (["failed", "canceled"], False)]:
        job_id = new_job_id("t1")
        store.create(job_id, "t1", "svd-xt", {"image": "a", "webhook": {"url": "https://e.com/h", "events": events}})
        store.mark_running(job_id)
        record = store.succeed(job_id, StoredResult()).record
        assert record is not None
        message = job_webhook_message(record, str)
        assert (message is not None) is sent
        if message is not None:
            assert json.loads(message.body)["type"] == "job.succeeded"


def test_started_is_sent_for_a_run_that_has_just_started_when_asked(store: JobStore) -> None:
    for events, sent in [(["started"], True), (["progress", "completed"], False)]:
        job_id = new_job_id("t1")
        store.create(job_id, "t1", "svd-xt", {"image": "a", "webhook": {"url": "https://e.com/h", "events": events}})
        queued = store.get_any(job_id)
        assert queued is not None and job_webhook_message(queued, str) is None  # not while queued
        record = store.mark_running(job_id).record
        assert record is not None
        message = job_webhook_message(record, str)
        assert (message is not None) is sent
        if message is not None:
            assert message.msg_id == f"msg_{job_id}_started_1"
            body = json.loads(message.body)
            assert body["type"] == "job.started" and body["data"]["status"] == "running"
