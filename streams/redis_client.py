"""Every Redis client nudge uses is made here, from the settings: the URL, the user and
password that override the URL's, TLS (``rediss://``) with an optional CA bundle, and
Redis Cluster.

The URL is a secret (it may carry a password): what logs and errors say of it is
:func:`redis_address`, host, port and database only.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from streams.errors import StreamsError
from streams.settings import Settings

__all__ = [
    "RedisAuthError",
    "auth_refused",
    "check_redis",
    "redis_address",
    "redis_client",
    "redis_options",
    "refused_credentials",
]


class RedisAuthError(StreamsError):
    """Redis refused the configured credentials (or wants some and got none)."""


def redis_options(settings: Settings) -> dict[str, Any]:
    """The connection keywords of ``settings``: the URL's, then the separate settings over
    them (redis-py lets a URL's credentials win over keywords, so they are merged here)."""
    options: dict[str, Any] = dict(parse_url(settings.redis_url.get_secret_value()))
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
        options["username"] = settings.redis_username
    if settings.redis_tls_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
        options["ssl_cert_reqs"] = "required"
    return options


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client of the Redis ``settings`` name; the caller closes it (``aclose``).

    With ``redis_cluster`` it is a :class:`redis.asyncio.RedisCluster`, which answers the
    same commands nudge's stores send (they group their scripts per slot themselves); it
    is typed as :class:`~redis.asyncio.Redis` so the stores need not know which.
    """
    options = redis_options(settings)
    if settings.redis_cluster:
        if options.pop("connection_class", None) is SSLConnection:
            options["ssl"] = True
        return cast(aioredis.Redis, aioredis.RedisCluster(**options))
    return aioredis.Redis.from_pool(aioredis.ConnectionPool(**options))


def redis_address(settings: Settings) -> str:
    """Where Redis is, for messages: scheme, host, port and database, never credentials."""
    url = urlsplit(settings.redis_url.get_secret_value())
    if url.scheme == "unix":
        return f"unix://{url.path}"
    host = url.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{host}{port}{url.path}"


async def check_redis(settings: Settings) -> None:
    """Ping Redis once: :class:`RedisAuthError` if it refuses the credentials, in words
    that name the settings and never their values. Any other failure (Redis down) is left
    to the callers' retries, as an outage."""
    client = redis_client(settings)
    try:
        await client.ping()
    except (AuthenticationError, ResponseError) as exc:
        if isinstance(exc, ResponseError) and not _is_auth_refusal(exc):
            raise
        raise RedisAuthError(auth_refused(settings, exc)) from exc
    except RedisError:
        pass
    finally:
        await client.aclose()


def auth_refused(settings: Settings, exc: BaseException) -> str:
    """What to say when Redis refuses the credentials: the settings' names, never their
    values (Redis's own answers do not carry them either)."""
    return (
        f"Redis at {redis_address(settings)} refused the credentials ({type(exc).__name__}: "
        f"{exc}); check NUDGE_REDIS_PASSWORD / NUDGE_REDIS_USERNAME or the user and "
        "password in NUDGE_REDIS_URL"
    )


def refused_credentials(exc: BaseException) -> AuthenticationError | None:
    """Redis's refusal of the credentials behind ``exc``, if that is what it is (the
    stores translate Redis's errors into their own, the refusal as their cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AuthenticationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _is_auth_refusal(exc: ResponseError) -> bool:
    text = str(exc).upper()
    return text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")) or "AUTH" in text
