"""Stored directions' records: the API stores uploads, a fit's worker stores what it fitted; both list,
read and delete them the same way.

A record (`api_schemas.directions.DirectionResource` as JSON) lives at `direction_record_key`, and the
tenant's index (a sorted set scored by creation time) lists them newest first. The vector itself is in
storage (`storage.keys.direction_key`), written before its record, so a listed direction is readable.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING

from api_schemas.directions import DirectionResource
from jobstate.redis_keys import PREFIX, direction_record_key

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis
    import redis.asyncio.cluster as aiocluster
    import redis.cluster

    SyncClient = redis.Redis | redis.cluster.RedisCluster
    AsyncClient = aioredis.Redis | aiocluster.RedisCluster


def direction_index_key(tenant: str) -> str:
    return f"{PREFIX}directions:{tenant}"


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


async def list_directions(client: "AsyncClient", tenant: str, limit: int) -> list[DirectionResource]:
    key = direction_index_key(tenant)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in await client.zrevrange(key, 0, limit - 1)]
    records = await client.mget([direction_record_key(tenant, i) for i in ids]) if ids else []
    return [DirectionResource.model_validate_json(r) for r in records if r is not None]


async def delete_direction(client: "AsyncClient", tenant: str, direction_id: str) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(direction_record_key(tenant, direction_id))
        pipe.zrem(direction_index_key(tenant), direction_id)
        await pipe.execute()
