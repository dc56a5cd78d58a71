"""How the one Redis client factory reads the settings, and what it never says."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.connection import SSLConnection
from redis.exceptions import AuthenticationError

from streams.redis_client import auth_refused, redis_address, redis_client, redis_options
from streams.settings import Settings

SECRET = "s3cret-Pa55word"


def test_the_urls_credentials_are_used_when_no_setting_overrides_them() -> None:
    options = redis_options(Settings(redis_url=f"redis://ada:{SECRET}@db.example:6380/2"))
    assert (options["username"], options["password"]) == ("ada", SECRET)
    assert (options["host"], options["port"], options["db"]) == ("db.example", 6380, 2)


def test_the_separate_settings_override_the_urls_credentials() -> None:
    settings = Settings(
        redis_url="redis://ada:old@db.example:6380/0",
        redis_username="grace",
        redis_password=SECRET,
    )
    options = redis_options(settings)
    assert (options["username"], options["password"]) == ("grace", SECRET)


def test_rediss_uses_tls_and_the_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until a connection is made")
    settings = Settings(redis_url="rediss://db.example:6380/0", redis_tls_ca_file=ca)
    options = redis_options(settings)
    assert options["connection_class"] is SSLConnection
    assert (options["ssl_ca_certs"], options["ssl_cert_reqs"]) == (str(ca), "required")


async def test_the_client_is_a_cluster_client_when_asked() -> None:
    settings = Settings(redis_url=f"redis://:{SECRET}@127.0.0.1:7000/0", redis_cluster=True)
    client = redis_client(settings)
    try:
        assert isinstance(client, aioredis.RedisCluster)
    finally:
        await client.aclose()


def test_the_address_and_the_settings_never_show_the_password() -> None:
    settings = Settings(redis_url=f"rediss://ada:{SECRET}@db.example:6380/1")
    assert redis_address(settings) == "rediss://db.example:6380/1"
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    message = auth_refused(settings, AuthenticationError("invalid username-password pair"))
    assert SECRET not in message and "NUDGE_REDIS_PASSWORD" in message


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"redis_url": f"http://ada:{SECRET}@db"}, "redis://"),
        ({"redis_username": "ada"}, "NUDGE_REDIS_PASSWORD"),
        ({"redis_tls_ca_file": Path(__file__)}, "rediss://"),
        ({"redis_url": "rediss://db", "redis_tls_ca_file": Path("/no/such.pem")}, "no such"),
    ],
)
def test_bad_redis_settings_are_refused_without_their_values(
    values: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**values)
    assert says in str(info.value) and SECRET not in str(info.value)
