"""Items 8 and 9: no key reaches another tenant's jobs, events, results, assets or stored directions
(every probe a 404, like a missing id); presigned URLs stop working when they expire; each API key is
rate limited (429 + `Retry-After`) and each tenant has a cap on its queued + running jobs (429)."""

import time

import pytest

from api_schemas import JobStatus
from storage.base import ObjectNotFound
from storage.local import LocalStorage
from tests.reliability.conftest import (
    FILES_SECRET,
    KEY_A,
    KEY_B,
    TENANT_A,
    TENANT_B,
    problem,
    record_figures,
    standin_job,
    tiny_png,
    wait_terminal,
)
from workers.job_runner import WorkerDeps, fetch_direction

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_no_tenant_reaches_another_tenants_data(stack_factory):
    stack = stack_factory()
    stack.start_api()
    stack.start_worker()
    store = stack.store()
    owned: dict[str, dict[str, str]] = {}
    with stack.client(KEY_A) as a, stack.client(KEY_B) as b:
        # 1. each tenant owns an asset, a finished job and a queued job
        for key, client in ((KEY_A, a), (KEY_B, b)):
            asset = client.post("/v1/assets", files={"file": ("a.png", tiny_png(), "image/png")}).json()["id"]
            done = client.post("/v1/jobs", json=standin_job(image=f"asset:{asset}")).json()["id"]
            direction = client.post("/v1/directions", json={"vector": [1, 0, 0, 0], "model": "tiny", "space": "latent"})
            anchor = client.post("/v1/anchors", json={"name": "house look", "seed": 7})
            assert direction.status_code == 201 and anchor.status_code == 201, (direction.text, anchor.text)
            fit = client.post(
                "/v1/directions", json={"method": "pca", "model": "tiny", "images": [f"asset:{asset}"] * 2}
            )
            assert fit.status_code == 202, fit.text
            owned[key] = {
                "asset": asset,
                "done": done,
                "direction": direction.json()["id"],
                "anchor": anchor.json()["id"],
                "fit": fit.json()["id"],
            }
        wait_terminal(store, TENANT_A, [owned[KEY_A]["done"]], 60)
        wait_terminal(store, TENANT_B, [owned[KEY_B]["done"]], 60)
        for key, client in ((KEY_A, a), (KEY_B, b)):
            owned[key]["running"] = client.post("/v1/jobs", json=standin_job(steps=40, step_s=0.25)).json()["id"]

        # 2. every route that takes an id, with the other tenant's ids
        probes = 0
        not_found = 0
        leaks = []
        for key, client in ((KEY_A, a), (KEY_B, b)):
            other = owned[KEY_B if key == KEY_A else KEY_A]
            requests = [
                ("GET", f"/v1/assets/{other['asset']}"),
                ("GET", f"/v1/directions/{other['direction']}"),
                ("DELETE", f"/v1/directions/{other['direction']}"),
                ("GET", f"/v1/anchors/{other['anchor']}"),
                ("POST", f"/v1/anchors/{other['anchor']}/versions", {"seed": 8}),
                ("DELETE", f"/v1/anchors/{other['anchor']}"),
                ("GET", f"/v1/directions/fits/{other['fit']}"),
                ("POST", f"/v1/directions/fits/{other['fit']}/cancel"),
                ("GET", f"/v1/jobs/{other['fit']}"),
                *[
                    (method, path.format(job=job))
                    for job in (other["done"], other["running"])
                    for method, path in (
                        ("GET", "/v1/jobs/{job}"),
                        ("GET", "/v1/jobs/{job}/events"),
                        ("POST", "/v1/jobs/{job}/cancel"),
                        ("GET", "/v1/jobs/{job}/result/video"),
                        ("GET", "/v1/jobs/{job}/result/manifest"),
                        ("GET", "/v1/jobs/{job}/result/poster"),
                    )
                ],
            ]
            for method, path, *body in requests:
                response = client.request(method, path, json=body[0] if body else None)
                probes += 1
                if response.status_code == 404:
                    problem(response, 404)
                    not_found += 1
                else:
                    leaks.append((key, method, path, response.status_code))
            # the listing holds only the caller's jobs; a document cannot borrow the other's asset
            listed = {j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["items"]}
            assert not listed & {other["done"], other["running"], other["fit"], owned[key]["fit"]}
            for route, mine in (("assets", "asset"), ("directions", "direction"), ("anchors", "anchor")):
                ids = {item["id"] for item in client.get(f"/v1/{route}").json()["items"]}
                assert other[mine] not in ids and owned[key][mine] in ids, (route, ids)
            cited = standin_job(directions=[{"source": {"id": other["direction"]}, "space": "latent"}])
            body = problem(client.post("/v1/jobs", json=cited), 422)
            probes += 1
            not_found += body["errors"][0]["rule"] == "unknown_direction"
            borrowed = client.post("/v1/jobs", json=standin_job(image=f"asset:{other['asset']}"))
            probes += 1
            body = problem(borrowed, 422)
            not_found += body["errors"][0]["rule"] == "unknown_asset"
            fit_borrowing = {"method": "pca", "model": "tiny", "images": [f"asset:{other['asset']}"] * 2}
            body = problem(client.post("/v1/directions", json=fit_borrowing), 422)
            probes += 1
            not_found += body["errors"][0]["rule"] == "unknown_asset"
        # the other tenant's running job was not canceled by the probes
        assert store.get(TENANT_A, owned[KEY_A]["running"]).status is not JobStatus.canceled
        assert store.get(TENANT_B, owned[KEY_B]["running"]).status is not JobStatus.canceled

        # 3. workers read stored directions under the job's tenant only
        storage = LocalStorage(stack.storage_dir, secret=FILES_SECRET)
        storage.put(f"directions/{TENANT_A}/dir_smile.safetensors", b"vector", "application/octet-stream")
        deps = WorkerDeps(store=store, storage=storage, registry=None)
        assert fetch_direction(deps, TENANT_A, "dir_smile") == b"vector"
        probes += 1
        try:
            fetch_direction(deps, TENANT_B, "dir_smile")
            leaks.append((KEY_B, "direction", "dir_smile", "read"))
        except ObjectNotFound:
            not_found += 1

        # 4. result URLs: the owner's works; it stops working once expired; a tampered one never works
        redirect = a.get(f"/v1/jobs/{owned[KEY_A]['done']}/result/video", follow_redirects=False)
        assert redirect.status_code == 307
        location = redirect.headers["location"].replace("http://127.0.0.1", stack.url)
        assert a.get(location).status_code == 200
        key = f"jobs/{TENANT_A}/{owned[KEY_A]['done']}/video.mp4"
        short = storage.presigned_url(key, 1).replace("http://127.0.0.1", stack.url)
        fresh_status = a.get(short).status_code
        time.sleep(2.2)
        expired = a.get(short)
        tampered = a.get(location.replace(TENANT_A, TENANT_B))
    record_figures(
        "tenant_isolation",
        {
            "cross_tenant_probes": probes,
            "answered_not_found": not_found,
            "not_found_rate": round(not_found / probes, 4),
            "leaks": leaks,
            "presigned_url_before_expiry": fresh_status,
            "presigned_url_after_expiry": expired.status_code,
            "tampered_url": tampered.status_code,
        },
    )
    assert not leaks and not_found == probes
    assert fresh_status == 200 and expired.status_code == 404 and tampered.status_code == 404


def test_rate_limits_per_key_and_the_cap_on_active_jobs(stack_factory):
    rate, burst, cap = 5.0, 10, 3
    stack = stack_factory(
        api_env={
            "VSTEER_RATE_LIMIT_PER_S": str(rate),
            "VSTEER_RATE_LIMIT_BURST": str(burst),
            "VSTEER_MAX_ACTIVE_JOBS_PER_TENANT": str(cap),
        }
    )
    stack.start_api()
    with stack.client(KEY_A) as a, stack.client(KEY_B) as b:
        # 1. a steady 20 requests per second for 3 s against a limit of 5 per second (bursts of 10)
        statuses: list[int] = []
        retry_after: list[int] = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < 3.0:
            response = a.get("/v1/jobs")
            statuses.append(response.status_code)
            if response.status_code == 429:
                problem(response, 429)
                retry_after.append(int(response.headers["retry-after"]))
            time.sleep(max(0.0, len(statuses) / 20 - (time.monotonic() - started)))
        allowed = statuses.count(200)
        other_key = b.get("/v1/jobs").status_code  # another key has its own bucket
        time.sleep(max(retry_after))
        after_wait = a.get("/v1/jobs").status_code

        # 2. the tenant's cap on queued + running jobs (no worker runs, so they stay queued)
        time.sleep(burst / rate)
        submits = [a.post("/v1/jobs", json=standin_job()) for _ in range(cap + 2)]
        capped = [r for r in submits if r.status_code == 429]
        for response in capped:
            assert problem(response, 429)["type"].endswith("/too-many-active-jobs")
            assert int(response.headers["retry-after"]) >= 1
        other_tenant = b.post("/v1/jobs", json=standin_job()).status_code
        first = submits[0].json()["id"]
        assert a.post(f"/v1/jobs/{first}/cancel").status_code == 200
        after_cancel = a.post("/v1/jobs", json=standin_job()).status_code
        stack.start_worker()
        wait_terminal(stack.store(), TENANT_A, [r.json()["id"] for r in submits if r.status_code == 202], 60)
        after_drain = a.post("/v1/jobs", json=standin_job()).status_code
    expected = burst + rate * elapsed
    record_figures(
        "rate_limits",
        {
            "limit_per_s": rate,
            "burst": burst,
            "requests": len(statuses),
            "offered_per_s": round(len(statuses) / elapsed, 1),
            "allowed": allowed,
            "expected_allowed": round(expected, 1),
            "answered_429": statuses.count(429),
            "429_with_retry_after": len(retry_after),
            "retry_after_s": sorted(set(retry_after)),
            "other_key_meanwhile": other_key,
            "after_waiting_retry_after": after_wait,
            "active_cap": cap,
            "submits": [r.status_code for r in submits],
            "other_tenant_under_cap": other_tenant,
            "after_one_canceled": after_cancel,
            "after_queue_drained": after_drain,
        },
    )
    assert statuses.count(429) == len(retry_after) > 0
    assert abs(allowed - expected) <= 3, (allowed, expected)
    assert other_key == 200 and after_wait == 200
    assert [r.status_code for r in submits] == [202] * cap + [429] * 2
    assert other_tenant == 202 and after_cancel == 202 and after_drain == 202
