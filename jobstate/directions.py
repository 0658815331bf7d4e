"""Stored directions' records: the API stores uploads, a fit's worker stores what it fitted; both list,
read and delete them the same way.

A record (`api_schemas.directions.DirectionResource` as JSON) lives at `direction_record_key`, and the
tenant's index (a sorted set scored by creation time) lists them newest first. The vector itself is in
storage (`storage.keys.direction_key`), written before its record, so a listed direction is readable.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from api_schemas.directions import DirectionResource
from jobstate.redis_keys import direction_index_key, direction_record_key
from jobstate.steps import text

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis
    import redis.asyncio.cluster as aiocluster
    import redis.cluster

    SyncClient = redis.Redis | redis.cluster.RedisCluster
    AsyncClient = aioredis.Redis | aiocluster.RedisCluster


def put_directions(client: "SyncClient", tenant: str, resources: Iterable[DirectionResource]) -> None:
    """Record directions (a re-run of the same fit writes the same ids again: the same outcome)."""
    with client.pipeline(transaction=True) as pipe:
        for resource in resources:
            pipe.set(direction_record_key(tenant, resource.id), resource.model_dump_json())
            pipe.zadd(direction_index_key(tenant), {resource.id: resource.created_at.timestamp()})
        pipe.execute()


async def put_directions_async(client: "AsyncClient", tenant: str, resources: Iterable[DirectionResource]) -> None:
    async with client.pipeline(transaction=True) as pipe:
        for resource in resources:
            pipe.set(direction_record_key(tenant, resource.id), resource.model_dump_json())
            pipe.zadd(direction_index_key(tenant), {resource.id: resource.created_at.timestamp()})
        await pipe.execute()


async def get_direction(client: "AsyncClient", tenant: str, direction_id: str) -> DirectionResource | None:
    raw = await client.get(direction_record_key(tenant, direction_id))
    return None if raw is None else DirectionResource.model_validate_json(raw)


def direction_cursor(created: float, direction_id: str) -> str:
    """Where a page ended: the last direction's index score (its creation time) and id."""
    return f"{created!r}:{direction_id}"


async def list_directions(
    client: "AsyncClient", tenant: str, limit: int, cursor: str | None = None
) -> tuple[list[DirectionResource], str | None]:
    """A page of the tenant's directions, newest first, and the cursor of the next (None on the last).

    The index orders by creation time, then by id (descending, as Redis orders equal scores); a fit's
    directions share one creation time. The cursor names where the page ended, time and id, so that
    the next page starts right after it even when that direction has been deleted since."""
    key = direction_index_key(tenant)
    if cursor is None:
        rows = [(text(m), float(s)) for m, s in await client.zrevrange(key, 0, limit, withscores=True)]
    else:
        score, _, last = cursor.partition(":")
        after = float(score)
        # the rest of the page's tie (same time, smaller id), then what is older
        tied = sorted((m for m in map(text, await client.zrangebyscore(key, after, after)) if m < last), reverse=True)
        rows = [(m, after) for m in tied[: limit + 1]]
        if len(rows) <= limit:
            older = await client.zrevrangebyscore(
                key, f"({after!r}", "-inf", start=0, num=limit + 1 - len(rows), withscores=True
            )
            rows += [(text(m), float(s)) for m, s in older]
    page, more = rows[:limit], len(rows) > limit
    records = await client.mget([direction_record_key(tenant, i) for i, _ in page]) if page else []
    items = [DirectionResource.model_validate_json(r) for r in records if r is not None]
    return items, direction_cursor(page[-1][1], page[-1][0]) if more else None


async def existing_directions(client: "AsyncClient", tenant: str, direction_ids: Iterable[str]) -> set[str]:
    """Which of `direction_ids` the tenant still has (a fit lists what it stored; some may be deleted since)."""
    ids = list(dict.fromkeys(direction_ids))
    if not ids:
        return set()
    async with client.pipeline(transaction=False) as pipe:
        for direction_id in ids:
            pipe.exists(direction_record_key(tenant, direction_id))
        found = await pipe.execute()
    return {direction_id for direction_id, count in zip(ids, found, strict=True) if count}


async def delete_direction(client: "AsyncClient", tenant: str, direction_id: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(direction_record_key(tenant, direction_id))
        pipe.zrem(direction_index_key(tenant), direction_id)
        await pipe.execute()
