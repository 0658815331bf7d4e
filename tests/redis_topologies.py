"""Redis Cluster and Redis Sentinel on loopback for tests: real `redis-server` processes on free ports.

`start_cluster` makes a cluster of `nodes` primaries (`redis-cli --cluster create`, no replicas) and
waits for `cluster_state:ok`; `start_sentinel_group` a primary, a replica and three Sentinels that
watch it with short timeouts, so a killed primary is replaced within a few seconds.
"""

import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.servers import Process, port_open, spawn, wait_for


def _free_pair() -> int:
    """A port that is free, and whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        if not port_open("127.0.0.1", port) and not port_open("127.0.0.1", port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not on PATH (apt-get install redis-server redis-tools)")
    return found


def _redis_server(port: int, data_dir: Path, *extra: str) -> Process:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        _binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--save", "", "--appendonly", "no", "--protected-mode", "no", *extra,
    ]  # fmt: skip
    process = spawn(argv, data_dir / "redis.log")
    wait_for(lambda: port_open("127.0.0.1", port), 10, "redis-server", process.log)
    return process


@dataclass
class Cluster:
    ports: list[int]
    processes: list[Process] = field(repr=False)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def start_cluster(tmp_path: Path, nodes: int = 3) -> Cluster:
    ports = [_free_pair() for _ in range(nodes)]
    processes: list[Process] = []
    cluster = Cluster(ports, processes)  # stops the nodes started so far when a later one fails
    try:
        for port in ports:
            directory = tmp_path / f"node-{port}"
            conf = str(directory / "nodes.conf")
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", conf, "--cluster-node-timeout", "2000"]
            processes.append(_redis_server(port, directory, *extra))
        create = [_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=30)

        def ok() -> bool:
            return all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok" for p in ports)

        wait_for(ok, 20, "the cluster's cluster_state:ok")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class SentinelGroup:
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    processes: dict[str, Process] = field(repr=False)
    name: str = "vsteer"

    @property
    def url(self) -> str:
        return f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.sentinel_ports)}/{self.name}/0"

    def primary_address(self) -> tuple[str, int]:
        host, port = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(self.name)
        return str(host.decode() if isinstance(host, bytes) else host), int(port)

    def kill_primary(self) -> None:
        """SIGKILL the primary now, as a crashed host."""
        process = self.processes["primary"]
        process.proc.kill()
        process.proc.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


def start_sentinel_group(tmp_path: Path, down_after_ms: int = 1000, failover_timeout_ms: int = 4000) -> SentinelGroup:
    """A primary, one replica of it and three Sentinels (quorum 2) on loopback."""
    primary, replica = _free_pair(), _free_pair()
    processes = {"primary": _redis_server(primary, tmp_path / "primary")}
    try:
        processes["replica"] = _redis_server(replica, tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary))
        wait_for(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up", 10, "the replica")
        sentinels = [_free_pair() for _ in range(3)]
        for port in sentinels:
            directory = tmp_path / f"sentinel-{port}"
            directory.mkdir(parents=True)
            conf = directory / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
                f"sentinel monitor vsteer 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds vsteer {down_after_ms}\n"
                f"sentinel failover-timeout vsteer {failover_timeout_ms}\n"
                "sentinel parallel-syncs vsteer 1\n"
            )
            processes[f"sentinel-{port}"] = spawn([_binary("redis-server"), str(conf), "--sentinel"], directory / "log")
            wait_for(lambda port=port: port_open("127.0.0.1", port), 10, "redis sentinel")
        group = SentinelGroup(primary, replica, sentinels, processes)

        def watched() -> bool:
            return all(
                int(redis.Redis(port=p).sentinel_master("vsteer")["num-other-sentinels"]) == 2
                and int(redis.Redis(port=p).sentinel_master("vsteer")["num-slaves"]) == 1
                for p in sentinels
            )

        wait_for(watched, 20, "the sentinels to find each other and the replica")
    except BaseException:
        for process in processes.values():
            process.stop()
        raise
    return group


def wait_for_failover(group: SentinelGroup, timeout_s: float = 20.0) -> float:
    """Seconds until the Sentinels name the replica as the primary."""
    start = time.monotonic()
    wait_for(lambda: group.primary_address()[1] == group.replica_port, timeout_s, "the failover")
    return time.monotonic() - start
