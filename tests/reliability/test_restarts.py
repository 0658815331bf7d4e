"""Items 2 and 4: Redis restarted (AOF on) with jobs queued and running loses none of them, the API
answers 503 problem+json while Redis is away and recovers by itself; an API restart leaves every job's
state as it was."""

import time

import httpx
import pytest

from api_schemas import JobStatus
from tests.reliability.conftest import TENANT_A, full_or, problem, record_figures, standin_job, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _probe(client: httpx.Client, job_id: str) -> list[httpx.Response]:
    return [
        client.get(f"/v1/jobs/{job_id}"),
        client.get("/v1/jobs"),
        client.post("/v1/jobs", json=standin_job()),
        client.post(f"/v1/jobs/{job_id}/cancel"),
        client.get("/v1/models"),
        client.get(f"/v1/jobs/{job_id}/events"),
    ]


def test_redis_restart_loses_no_job_and_the_api_answers_503_meanwhile(stack_factory):
    down_s = full_or(15.0, 4.0)
    stack = stack_factory(appendonly=True, api_env={"VSTEER_RATE_LIMIT_PER_S": "1000"})
    stack.start_api()
    stack.start_worker()
    store = stack.store()
    with stack.client(timeout=10) as client:
        job_ids = []
        for _ in range(6):
            response = client.post("/v1/jobs", json=standin_job(steps=16, step_s=0.25))
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["id"])
        # 1. one job running a few steps in, five queued
        deadline = time.monotonic() + 30
        while (rec := store.get(TENANT_A, job_ids[0])).progress is None or rec.progress.step < 2:
            assert time.monotonic() < deadline, stack.worker_logs()
            time.sleep(0.05)
        before = {j: store.get(TENANT_A, j).status.value for j in job_ids}

        # 2. Redis goes away; every API answer meanwhile is a 503 problem+json, never a 500
        stack.redis.stop()
        went_down = time.monotonic()
        statuses: dict[int, int] = {}
        latencies = []
        while time.monotonic() - went_down < down_s:
            for response in _probe(client, job_ids[1]):
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                latencies.append(response.elapsed.total_seconds())
                assert response.status_code == 503, (response.request.url, response.status_code, response.text)
                body = problem(response, 503)
                assert response.headers.get("retry-after"), response.headers
                assert "unreachable" in body["detail"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unavailable")
            time.sleep(0.2)

        # 3. Redis comes back with its AOF; the API recovers without a restart
        stack.redis.restart()
        back = time.monotonic()
        while client.get(f"/v1/jobs/{job_ids[1]}").status_code != 200:
            assert time.monotonic() - back < 30, "the API did not recover"
            time.sleep(0.05)
        recovered_s = time.monotonic() - back
        after_restart = {j: store.get(TENANT_A, j).status.value for j in job_ids}
        response = client.post("/v1/jobs", json=standin_job())
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["id"])

    # 4. every job, queued or running when Redis went down, finishes
    final = wait_terminal(store, TENANT_A, job_ids, 180, stack.worker_logs())
    lost = [j for j, r in final.items() if r.status is not JobStatus.succeeded]
    record_figures(
        "redis_restart",
        {
            "aof": "appendonly yes, appendfsync always",
            "outage_s": down_s,
            "jobs": len(job_ids),
            "states_before": sorted(before.values()),
            "states_after_restart": sorted(after_restart.values()),
            "lost": len(lost),
            "api_answers_during_outage": {str(k): v for k, v in statuses.items()},
            "api_5xx_other_than_503": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
            "max_answer_s_during_outage": round(max(latencies), 3),
            "api_recovered_after_s": round(recovered_s, 2),
        },
    )
    assert not lost, {j: final[j].error for j in lost}


def test_an_api_restart_keeps_every_job_state(stack_factory):
    stack = stack_factory()
    stack.start_api()
    stack.start_worker()
    store = stack.store()
    with stack.client() as client:
        ids = {}
        for name, doc in [
            ("succeeded", standin_job()),
            ("failed", standin_job(metadata={"standin_crash": "raise"})),
        ]:
            ids[name] = client.post("/v1/jobs", json=doc).json()["id"]
        wait_terminal(store, TENANT_A, list(ids.values()), 60)
        ids["running"] = client.post("/v1/jobs", json=standin_job(steps=60, step_s=0.25)).json()["id"]
        ids["queued"] = client.post("/v1/jobs", json=standin_job()).json()["id"]
        ids["canceled"] = client.post("/v1/jobs", json=standin_job()).json()["id"]
        assert client.post(f"/v1/jobs/{ids['canceled']}/cancel").status_code == 200
        while store.get(TENANT_A, ids["running"]).status is not JobStatus.running:
            time.sleep(0.05)
        before = {name: client.get(f"/v1/jobs/{job_id}").json() for name, job_id in ids.items()}
        listed_before = [j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["items"]]

    stack.stop_api()
    stack.start_api()

    with stack.client() as client:
        after = {name: client.get(f"/v1/jobs/{job_id}").json() for name, job_id in ids.items()}
        listed_after = [j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["items"]]
        intact = 0
        for name in ids:
            a, b = _stable(before[name]), _stable(after[name])
            assert a == b, (name, a, b)
            intact += 1
        assert listed_before == listed_after
        assert client.post(f"/v1/jobs/{ids['running']}/cancel").status_code == 202
    final = wait_terminal(store, TENANT_A, [ids["running"], ids["queued"]], 60)
    record_figures(
        "api_restart",
        {
            "jobs": len(ids),
            "states": {name: before[name]["status"] for name in ids},
            "intact_after_restart": intact,
            "listing_intact": listed_before == listed_after,
            "active_jobs_finished_after_restart": sorted(r.status.value for r in final.values()),
        },
    )


def _stable(resource: dict) -> dict:
    """A job resource without what moves on its own: progress of a running job, fresh URL signatures
    and the expiry that comes with them."""
    out = {k: v for k, v in resource.items() if k != "progress"}
    fresh = {"url", "expires_at"}
    if out.get("result"):
        out["result"] = {
            k: ({kk: vv for kk, vv in v.items() if kk not in fresh} if isinstance(v, dict) and "url" in v else v)
            for k, v in out["result"].items()
        }
    return out


def test_a_redis_that_stops_answering_gives_503_in_seconds_not_minutes(stack_factory):
    """A hung Redis (here: SIGSTOP) accepts connections but never answers: readiness says so within
    its own deadline, requests answer 503 once the socket timeout runs out, and all recover."""
    import signal

    stack = stack_factory()
    stack.start_api()
    with stack.client(timeout=60) as client:
        assert client.get("/readyz").status_code == 200
        job_id = client.post("/v1/jobs", json=standin_job()).json()["id"]
        stack.redis.process.proc.send_signal(signal.SIGSTOP)
        try:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "unavailable: TimeoutError"
            assert ready.elapsed.total_seconds() < 3
            for response in (client.get(f"/v1/jobs/{job_id}"), client.post("/v1/jobs", json=standin_job())):
                problem(response, 503)
                assert response.elapsed.total_seconds() < 15, response.elapsed
        finally:
            stack.redis.process.proc.send_signal(signal.SIGCONT)
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
        assert client.get("/readyz").status_code == 200
