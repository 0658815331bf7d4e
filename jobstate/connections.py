"""Redis clients from a URL: one Redis, a Sentinel-managed primary, or a Redis Cluster; and the
Celery broker settings of the same URL. Every process (API, GPU, CPU and webhook workers) builds its
clients here, so a URL means the same thing everywhere.

- `redis://[:password@]host:port/db`, `rediss://…`, `unix://…`: one Redis (redis-py's `from_url`).
- `redis+sentinel://[:password@]host:port,host2:port,…/<primary name>[/db]`: the primary that the
  Sentinels at those addresses name; the password is the primary's (and its replicas'). A client
  asks the Sentinels for the primary's address whenever it (re)connects, so after a failover it
  follows the promoted replica. Celery: kombu's `sentinel://` transport with `master_name`.
- `redis+cluster://[:password@]host:port,host2:port,…`: a Redis Cluster (redis-py's `RedisCluster`,
  any reachable nodes to start from). Job state only: kombu has no cluster transport, so with a
  cluster `VSTEER_BROKER_URL` names the broker (one Redis or Sentinel) and
  `JobStateSettings.broker` refuses a cluster there.

Redis replication is asynchronous, under Sentinel as everywhere: a write acknowledged in the last
instant before the primary dies may not have reached the replica that is promoted. For a job that is
a transition lost (a claim, a progress tick, rarely a terminal state): the worker's next write is
refused or redone, and a run whose claim was lost is found by the reaper (`docs/reliability.md`).
"""

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names: `kind`, the addresses, the Sentinel primary's name, the database, the password."""

    kind: Literal["single", "sentinel", "cluster"]
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = None


def parse(url: str) -> RedisTarget:
    """Read a URL of one of the forms above; raises `ValueError` naming the URL and what is wrong."""
    scheme = url.split("://", 1)[0]
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        return RedisTarget("single", url)
    rest = url.split("://", 1)[1]
    userinfo, _, location = rest.rpartition("@")
    password = unquote(userinfo.split(":", 1)[1]) if ":" in userinfo else (unquote(userinfo) or None)
    netloc, _, path = location.partition("/")
    hosts = tuple(_host(part, url) for part in netloc.split(",") if part)
    if not hosts:
        raise ValueError(f"{_safe(url)}: give at least one host:port")
    parts = [p for p in urlsplit("x://h/" + path).path.split("/") if p]
    if scheme == CLUSTER_SCHEME:
        if parts not in ([], ["0"]):
            raise ValueError(f"{_safe(url)}: a Redis Cluster has database 0 only, got /{'/'.join(parts)}")
        return RedisTarget("cluster", url, hosts, password=password)
    if not parts or len(parts) > 2:
        raise ValueError(f"{_safe(url)}: write the primary's name after the Sentinels, then the db: …/mymaster/0")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"{_safe(url)}: the database must be a number, got {parts[1]!r}")
    return RedisTarget("sentinel", url, hosts, parts[0], int(parts[1]) if len(parts) == 2 else 0, password)


def _host(part: str, url: str) -> tuple[str, int]:
    host, _, port = part.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{_safe(url)}: each address must be host:port, got {part!r}")
    return host.strip("[]"), int(port)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, _, rest = url.partition("://")
    _, at, location = rest.rpartition("@")
    return f"{scheme}://{'***@' if at else ''}{location}"


def sync_client(url: str, **kwargs: Any) -> "redis.Redis | redis.cluster.RedisCluster":
    """A `redis.Redis` (one Redis, a Sentinel's primary) or a `redis.cluster.RedisCluster`; `kwargs`
    are connection settings (timeouts, retry)."""
    target = parse(url)
    if target.kind == "single":
        return redis.Redis.from_url(url, **kwargs)
    if target.kind == "cluster":
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in target.hosts]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(startup_nodes=nodes, password=target.password, **kwargs)
    sentinels = redis.sentinel.Sentinel(list(target.hosts), **_sentinel_kwargs(kwargs))
    primary: redis.Redis = sentinels.master_for(target.service, db=target.db, password=target.password, **kwargs)
    return primary


def async_client(url: str, **kwargs: Any) -> "aioredis.Redis | aiocluster.RedisCluster":
    """`sync_client`'s asyncio twin."""
    target = parse(url)
    if target.kind == "single":
        return aioredis.Redis.from_url(url, **kwargs)
    if target.kind == "cluster":
        nodes = [aiocluster.ClusterNode(h, p) for h, p in target.hosts]
        return aiocluster.RedisCluster(startup_nodes=nodes, password=target.password, **kwargs)
    sentinels = aiosentinel.Sentinel(list(target.hosts), **_sentinel_kwargs(kwargs))
    primary: aioredis.Redis = sentinels.master_for(target.service, db=target.db, password=target.password, **kwargs)
    return primary


def _sentinel_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    # the Sentinels are asked with the same timeouts as the data connections
    timeouts: dict[str, Any] = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs}
    return {"sentinel_kwargs": dict(timeouts), **timeouts}


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """The Celery broker URL and the transport options it needs (add the rest to these)."""
    target = parse(url)
    if target.kind == "cluster":
        raise ValueError(f"{_safe(url)}: Celery's Redis transport cannot use a Redis Cluster; set VSTEER_BROKER_URL")
    if target.kind == "single":
        return url, {}
    auth = f":{quote(target.password, safe='')}@" if target.password else ""
    broker = ";".join(f"sentinel://{auth}{h}:{p}/{target.db}" for h, p in target.hosts)
    return broker, {"master_name": target.service}


__all__ = ["RedisTarget", "async_client", "celery_broker", "parse", "sync_client"]
