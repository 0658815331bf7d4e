"""How a Redis URL is read (`jobstate.connections`): one server, Sentinel, cluster; the Celery broker
of each; and the settings that refuse what cannot work."""

import pytest
from pydantic import ValidationError

from jobstate.config import JobStateSettings
from jobstate.connections import celery_broker, parse


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_db() -> None:
    target = parse("redis+sentinel://:p%40ss@10.0.0.1:26379,sentinel-b:26380/mymaster/2")
    assert target.kind == "sentinel"
    assert target.hosts == (("10.0.0.1", 26379), ("sentinel-b", 26380))
    assert (target.service, target.db, target.password) == ("mymaster", 2, "p@ss")
    assert parse("redis+sentinel://s:26379/mymaster").db == 0


def test_celery_gets_kombus_sentinel_transport_with_the_primary_name() -> None:
    broker, options = celery_broker("redis+sentinel://:p%40ss@a:26379,b:26379/mymaster/1")
    assert broker == "sentinel://:p%40ss@a:26379/1;sentinel://:p%40ss@b:26379/1"
    assert options == {"master_name": "mymaster"}
    assert celery_broker("redis://h:6379/0") == ("redis://h:6379/0", {})
    with pytest.raises(ValueError, match="cannot use a Redis Cluster"):
        celery_broker("redis+cluster://a:7000")


def test_a_cluster_url_lists_its_start_nodes() -> None:
    target = parse("redis+cluster://a:7000,b:7001")
    assert (target.kind, target.hosts) == ("cluster", (("a", 7000), ("b", 7001)))
    assert parse("redis://localhost:6379/3").kind == "single"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("redis+sentinel://a:26379", "primary's name"),
        ("redis+sentinel://a:26379/m/x", "must be a number"),
        ("redis+sentinel://a/m/0", "host:port"),
        ("redis+sentinel:///m/0", "at least one host"),
        ("redis+cluster://a:7000/3", "database 0 only"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_rule(url: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        parse(url)


def test_settings_name_the_variable_and_refuse_a_cluster_broker() -> None:
    with pytest.raises(ValidationError, match=r"VSTEER_REDIS_URL: .*primary's name"):
        JobStateSettings(redis_url="redis+sentinel://a:26379")
    with pytest.raises(ValidationError, match="so VSTEER_BROKER_URL must name one Redis"):
        JobStateSettings(redis_url="redis+cluster://a:7000")
    with pytest.raises(ValidationError, match="VSTEER_BROKER_URL must name one Redis"):
        JobStateSettings(redis_url="redis://a:6379/0", broker_url="redis+cluster://a:7000")
    settings = JobStateSettings(redis_url="redis+cluster://a:7000", broker_url="redis+sentinel://s:26379/m/0")
    assert settings.broker == "redis+sentinel://s:26379/m/0"
    assert JobStateSettings(redis_url="redis://r:6379/0").broker == "redis://r:6379/0"
