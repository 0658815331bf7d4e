"""Every job-state script against a real Redis Cluster of three primaries on loopback.

The store runs each operation the API and the workers use (`redis+cluster://` job state, a plain
Redis as the broker, as a deployment on a cluster must) and every Lua script is counted: a script
whose keys hash to two slots fails with CROSSSLOT, one that touched a key it was not given fails on
the node that does not own it, and a script left out of the run fails the last assertion.
"""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import redis
from redis.crc import key_slot

from api_schemas import JobStatus, LivePreview
from api_schemas.directions import DirectionResource
from jobstate import dispatch
from jobstate.comparisons import (
    Child,
    ComparisonRecord,
    active_comparisons_op,
    cancel_comparison_op,
    compose_comparison_op,
    finish_comparison_op,
    get_comparison_op,
    new_comparison_id,
    put_comparison_op,
    settled_op,
)
from jobstate.directions import (
    delete_direction,
    get_direction,
    list_directions,
    put_directions,
    put_directions_async,
)
from jobstate.errors import RateLimited, TooManyActiveJobs
from jobstate.operations import RateLimit, create_op, running_jobs_op
from jobstate.records import AnchorVersion, AssetRecord, StoredArtifact, StoredResult, new_asset_id, new_job_id
from jobstate.redis_keys import KOMBU_UNACKED, SHARDS, asset_index, job_record_key, tenant_shard
from jobstate.scripts import BROKER_SCRIPTS, SCRIPTS
from jobstate.store import AsyncJobStore, JobStore, failure
from jobstate.task_message import task_message
from tests.redis_topologies import Cluster, start_cluster

QUEUE = "gpu.svd-xt"
REQUEST = {"model": "svd-xt", "image": "asset:abc", "seed": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


def count_scripts(store: JobStore | AsyncJobStore, seen: dict[str, set[int]]) -> None:
    """Note each script the store runs and how many slots the keys of each of its calls hash to."""
    for name, script in list(store._scripts.items()):

        def counted(*, keys: list[str], args: list[Any], _name: str = name, _script: Any = script) -> Any:
            seen.setdefault(_name, set()).add(len({key_slot(k.encode()) for k in keys}))
            return _script(keys=keys, args=args)

        store._scripts[name] = counted  # type: ignore[assignment]


def submit(store: JobStore, tenant: str = "t1", **options: Any) -> str:
    job_id = new_job_id(tenant)
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": tenant}, QUEUE, task_id=job_id)
    assert store.create(job_id, tenant, "svd-xt", REQUEST, task=task, **options).created
    return job_id


def deliver(broker: redis.Redis) -> str:
    """What kombu does when a worker takes a message with acks late."""
    message = broker.rpop(QUEUE).decode()
    tag = json.loads(message)["properties"]["delivery_tag"]
    broker.hset(KOMBU_UNACKED, tag, json.dumps([json.loads(message), "", QUEUE]))
    broker.zadd("unacked_index", {tag: time.time()})
    return message


RESULT = StoredResult(video=StoredArtifact(key="jobs/t1/x/video.mp4", content_type="video/mp4", bytes=3))


def test_every_script_runs_on_a_three_node_cluster(cluster: Cluster, redis_url: str) -> None:
    seen: dict[str, set[int]] = {}
    store = JobStore.from_url(cluster.url, broker_url=redis_url)
    assert isinstance(store.redis, redis.RedisCluster) and len(store.redis.get_primaries()) == 3
    count_scripts(store, seen)
    broker = redis.Redis.from_url(redis_url)
    store.redis.flushall()

    # create: idempotency, the per-tenant cap and a rate limit, its task on the broker's queue
    first = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": first, "tenant": "t1"}, QUEUE, task_id=first)
    rate = RateLimit("key-hash", rate_per_s=100, burst=100)
    made = store.create(first, "t1", "svd-xt", REQUEST, task=task, idempotency=("k1", "h1"), rate=rate, max_active=5)
    assert made.created
    replay = store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, task=task, idempotency=("k1", "h1"))
    assert not replay.created and replay.record.id == first
    assert broker.llen(QUEUE) == 1
    with pytest.raises(RateLimited):
        store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, rate=RateLimit("slow", 1e-9, 1))
        store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, rate=RateLimit("slow", 1e-9, 1))
    with pytest.raises(TooManyActiveJobs):
        store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, max_active=1)
    # a queue key of another type on the broker takes the new job back
    broker.set("gpu.wrong", "x")
    refused = new_job_id("t1")
    with pytest.raises(redis.ResponseError, match="holds a string"):
        store.create(refused, "t1", "m", {}, task=task_message("x", {}, "gpu.wrong", task_id=refused))
    assert store.get("t1", refused) is None

    # a worker runs the first job: claim with a lease, renew it, progress, preview, a step time, succeed
    deliver(broker)
    assert store.mark_running(first, "w1:1:aa", 30).applied
    assert store.renew_lease(first, "w1:1:aa", 30)
    assert store.progress(first, "denoising", 3, 10, owner="w1:1:aa").written
    preview = LivePreview(step=3, total=10, image="data:image/jpeg;base64,AAAA")
    assert store.preview(first, preview, owner="w1:1:aa")
    store.observe_step("svd-xt", 0.2)
    assert store.run(running_jobs_op("svd-xt")) == [first]
    assert store.succeed(first, RESULT, owner="w1:1:aa").applied
    assert store.get("t1", first).status is JobStatus.succeeded
    assert store.run(running_jobs_op("svd-xt")) == []

    # fail, cancel queued, cancel asked of a running job, hand back on shutdown
    failed = submit(store)
    assert store.fail(failed, failure("Boom", "it broke")).applied
    canceled = submit(store)
    assert store.request_cancel(canceled)[0] == "canceled"
    asked = submit(store)
    assert store.mark_running(asked, "w2:2:bb", 30).applied
    assert store.request_cancel(asked)[0] == "requested" and store.is_cancel_requested(asked)
    assert store.mark_canceled(asked, owner="w2:2:bb").applied
    handed = submit(store)
    assert store.mark_running(handed, "w3:3:cc", 30).applied
    assert store.requeue(handed, owner="w3:3:cc").applied

    # reap: a lost worker's job goes back to the broker's queue; a poison job is failed
    broker.delete(QUEUE, KOMBU_UNACKED, "unacked_index")  # the deliveries above were never acknowledged
    lost = submit(store, tenant="t2")
    message = deliver(broker)
    assert store.mark_running(lost, "w4:4:dd", 0.05).applied
    time.sleep(0.1)
    assert [(r.job_id, r.outcome) for r in store.reap(3)] == [(lost, "requeued")]
    assert [m.decode() for m in broker.lrange(QUEUE, 0, -1)] == [message] and broker.hlen(KOMBU_UNACKED) == 0
    assert store.mark_running(lost, "w5:5:ee", 0.05).applied
    time.sleep(0.1)
    (poison,) = store.reap(1)
    assert poison.outcome == "poison"
    assert store.fail_lost(lost, failure("Lost", "again"), poison.worker).applied
    # a cancel of a job whose worker was lost ends it at once
    gone = submit(store, tenant="t2")
    assert store.mark_running(gone, "w6:6:ff", 0.05).applied
    time.sleep(0.1)
    assert store.request_cancel(gone)[0] == "canceled"
    # a job that does not exist (no tenant to read): answered, not CROSSSLOT
    missing = new_job_id("t1")
    assert tenant_shard("t1") != tenant_shard("")
    assert store.request_cancel(missing) == ("missing", None)
    assert not store.mark_running(missing, "w7:7:aa").applied
    assert not store.succeed(missing, StoredResult()).applied

    # a create whose process died before it pushed the task: the next reap pushes it
    orphan = new_job_id("t3")
    flow = create_op(orphan, "t3", "svd-xt", REQUEST, task=task_message("x", {"job_id": orphan}, "gpu.orphan"))
    step = next(flow)
    assert step.script == "create"
    store.run(step)  # step 1 only, then the process "dies"
    flow.close()
    assert broker.llen("gpu.orphan") == 0
    store.run(dispatch.redispatch(tenant_shard("t3"), now=time.time() + dispatch.GRACE_S + 1))
    assert broker.llen("gpu.orphan") == 1
    assert store.run(dispatch.redispatch(tenant_shard("t3"), now=time.time() + dispatch.GRACE_S + 1)) == 0

    broker.delete(QUEUE)
    waiting = submit(store)
    anyio.run(api_side, cluster, redis_url, seen, failed, waiting)

    ours = set(SCRIPTS) | set(BROKER_SCRIPTS)
    assert set(seen) == ours, f"not run on the cluster: {sorted(ours - set(seen))}"
    for name in SCRIPTS:
        assert seen[name] == {1}, f"a call of {name} had keys in several slots: {seen[name]}"


async def api_side(cluster: Cluster, redis_url: str, seen: dict[str, set[int]], done: str, waiting: str) -> None:
    """What the API does: lists, queue positions, delete, events, assets, anchors, comparisons, rate limit."""
    store = AsyncJobStore.from_url(cluster.url, broker_url=redis_url)
    count_scripts(store, seen)
    try:
        page = await store.list_jobs("t1", limit=2)
        assert len(page.records) == 2 and page.next_cursor is not None
        assert (await store.list_jobs("t1", status=JobStatus.failed)).records[0].id == done
        assert await store.queue_positions([waiting, done]) == [0, None]
        assert await store.delete(done) == ("deleted", JobStatus.failed)
        assert await store.delete(new_job_id("t1")) == ("missing", None)  # no tenant to read: still one slot
        assert (await store.take_token("api-key", rate_per_s=10, burst=2, tenant="t1")).allowed

        # events go through the cluster's pub/sub
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def finish() -> None:
                    await anyio.sleep(0.3)
                    await store.mark_running(waiting)
                    await store.succeed(waiting, RESULT)

                tg.start_soon(finish)
                final = await store.wait_terminal("t1", waiting, timeout_s=5)
        assert final is not None and final.status is JobStatus.succeeded

        # a tenant's library: its own hash tag
        now = datetime.now(UTC)
        asset = AssetRecord(
            id=new_asset_id(), tenant="t1", key="assets/t1/a.png", kind="image", content_type="image/png",
            sha256="0" * 64, bytes=1, created_at=now,
        )  # fmt: skip
        await store.put_asset(asset)
        assert await store.get_asset("t1", asset.id) == asset
        assert [a.id for a in (await store.list_assets("t1")).records] == [asset.id]
        version = AnchorVersion(name="a", fields={"seed": 1}, sha256="1" * 64, created_at=now)
        assert await store.put_anchor("t1", "anc_1", version, new=True) == 1
        assert await store.put_anchor("t1", "anc_1", version, new=False) == 2
        assert (await store.get_anchor("t1", "anc_1", 1)).version == 1
        assert [a.id for a in (await store.list_anchors("t1")).records] == ["anc_1"]
        assert await store.delete_anchor("t1", "anc_1")

        # a comparison: written, its composition queued once on the CPU queue, finished; another canceled
        children = [Child("svd-xt", new_job_id("t1"))]
        record = ComparisonRecord(new_comparison_id(), "t1", {"a": 1}, 7, children, now)
        await store.run(put_comparison_op(record, retain_s=60))
        assert await store.run(active_comparisons_op()) == [("t1", record.id)]
        assert await store.run(compose_comparison_op("t1", record.id))
        assert not await store.run(compose_comparison_op("t1", record.id))
        assert await redis.asyncio.Redis.from_url(redis_url).llen("cpu") == 1
        assert await store.run(finish_comparison_op("t1", record.id, result={"table": []}))
        assert (await store.run(get_comparison_op("t1", record.id))).compose == "succeeded"
        await store.run(settled_op("t1", record.id))
        assert await store.run(active_comparisons_op()) == []
        other = ComparisonRecord(new_comparison_id(), "t1", {"a": 2}, 7, children, now)
        await store.run(put_comparison_op(other))
        assert await store.run(cancel_comparison_op("t1", other.id))
        # stored directions (a transaction, not a script): record and index share the tenant's shard's slot
        direction = DirectionResource(
            id="dir_1", model="svd-xt", space="latent", dimension=4, method="upload", sha256="2" * 64, created_at=now
        )
        put_directions(JobStore.from_url(cluster.url).redis, "t1", [direction])  # a fit's worker
        await put_directions_async(store.redis, "t1", [direction.model_copy(update={"id": "dir_2"})])  # the API
        first, cursor = await list_directions(store.redis, "t1", 1)
        rest, end = await list_directions(store.redis, "t1", 10, cursor)
        assert [d.id for d in first + rest] == ["dir_2", "dir_1"] and end is None
        await delete_direction(store.redis, "t1", "dir_1")
        assert await get_direction(store.redis, "t1", "dir_1") is None
    finally:
        await store.aclose()


def test_tenants_spread_over_the_clusters_primaries(cluster: Cluster) -> None:
    """Job state is not one slot: the tenants' jobs land in every shard, and the shards' slots are on
    every primary of the cluster, as each tenant's library is."""
    client = JobStore.from_url(cluster.url).redis
    assert isinstance(client, redis.RedisCluster)
    try:
        owners = {}
        for i in range(40):
            tenant = f"tenant-{i}"
            job_id = new_job_id(tenant)
            slot = key_slot(job_record_key(job_id).encode())
            owners[slot] = client.nodes_manager.get_node_from_slot(slot).name
        assert len(owners) == SHARDS and len(set(owners.values())) == 3
        libraries = {key_slot(asset_index(f"tenant-{i}").encode()) for i in range(20)}
        assert len({client.nodes_manager.get_node_from_slot(s).name for s in libraries}) == 3
    finally:
        client.close()
