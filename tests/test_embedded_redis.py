from pathlib import Path

import pytest
import redis

from queues.embedded import EmbeddedRedis, EmbeddedRedisError, find_redis_server


def test_embedded_redis_persists_with_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data")
    server.start()
    client = redis.Redis.from_url(server.url)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    client.set("k", "v")
    client.close()
    server.stop()
    assert server.process is None
    again = EmbeddedRedis(tmp_path / "data")
    again.start()
    client = redis.Redis.from_url(again.url)
    assert client.get("k") == b"v"
    client.close()
    again.stop()


def test_embedded_redis_tcp_when_socket_path_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    server = EmbeddedRedis(deep, appendonly=False)
    assert server.socket_path is None and server.url.startswith("redis://127.0.0.1:")
    with server, redis.Redis.from_url(server.url) as client:
        assert client.ping()


def test_binary_found_and_bad_binary_reported(tmp_path: Path) -> None:
    assert Path(find_redis_server()).exists()
    with pytest.raises(EmbeddedRedisError):
        EmbeddedRedis(tmp_path, binary="/bin/false").start(timeout=3)
