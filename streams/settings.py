"""The one settings model. Every field reads ``NUDGE_<FIELD>`` from the environment."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from profiles import Pseudonyms
from streams.ratelimit import check_rate_limits, parse_rate_limits

__all__ = ["MAKE_A_KEY", "MIN_SECRET_LENGTH", "Settings"]

#: the shortest secret key accepted (characters)
MIN_SECRET_LENGTH = 32
#: how to make a key, for messages
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Settings(BaseSettings):
    """Secrets are :class:`SecretStr` (their repr is stars), and no validation error
    carries an input: a rejected value may be a key, and an error about the whole model
    would carry every setting (see :meth:`__init__`)."""

    model_config = SettingsConfigDict(
        env_prefix="NUDGE_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
            return
        except ValidationError as exc:
            clean = _without_inputs(exc)
        raise clean  # outside the handler: the original error is not its context

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str = Field("localhost:9092", description="host:port[,host:port...]")
    app_id: str = Field("nudge", description="Faust app id, also the consumer group")
    events_topic: str = "nudge.events"
    send_topic: str = "nudge.send-requests"
    dead_letter_topic: str = "nudge.dead-letter"
    decisions_topic: str = "nudge.decisions"
    catalog_topic: str = Field(
        "nudge.catalog", description="compacted: key = product_id, JSON product, null deletes"
    )
    topic_partitions: int = Field(8, ge=1, description="used when nudge creates a topic")
    topic_replication: int = Field(1, ge=1)
    batch_size: int = Field(500, ge=1, description="most events handled in one batch")
    batch_within: float = Field(
        0.01, gt=0, description="seconds to gather what is buffered into one batch"
    )
    batch_max_wait: float = Field(
        0.2, ge=0, description="seconds a backlog's events may wait for a whole batch"
    )
    fetch_max_wait: float = Field(
        0.02, gt=0, description="seconds a fetch may wait on the broker for new events"
    )
    commit_interval: float = Field(1.0, gt=0, description="seconds between offset commits")
    session_timeout: float = Field(
        10.0, ge=2, description="consumer-group session timeout, seconds (rebalance speed)"
    )
    max_event_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="the largest event the worker parses; a larger one is dead-lettered "
        "with reason too_large",
    )

    # --- Kafka security (see README "Security"; applied by streams.kafka_security) ---------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the brokers (default: the system's)"
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="client certificate (PEM), for brokers that require one"
    )
    kafka_ssl_key_file: Path | None = Field(None, description="the client certificate's key")

    # --- Redis (profiles slice) ------------------------------------------------------------
    redis_url: SecretStr = Field(
        SecretStr("redis://localhost:6379/0"),
        description="redis://[user:password@]host:port/db, or rediss:// for TLS; secret "
        "(it may carry a password): logs and errors name only host, port and db",
    )
    redis_username: str | None = Field(
        None, description="Redis ACL user; overrides the URL's (needs redis_password)"
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password (AUTH); overrides the URL's"
    )
    redis_tls_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the Redis server (rediss:// only)"
    )
    redis_prefix: str = Field("nudge", description="namespace of every Redis key")
    redis_cluster: bool = Field(False, description="Redis Cluster: group scripts per slot")
    dedup_window: int = Field(1000, ge=1, description="event ids remembered per user")
    dedup_max_age: float = Field(
        3 * 86400.0,
        gt=0,
        description="seconds an applied event id is remembered, before the user's newest",
    )

    # --- privacy (profiles slice; see README "Privacy") -------------------------------------
    erasure_key: SecretStr | None = Field(
        None,
        description="HMAC key of erased user ids and addresses (tombstones, suppression "
        "list); required by `nudge worker`; never change it: the list would forget",
    )
    erasure_tombstone_ttl: float = Field(
        90 * 86400.0,
        gt=0,
        description="seconds an erasure tombstone lasts: events dated before an erasure "
        "are ignored while it does (keep it above the events topic's retention)",
    )
    profile_retention: float | None = Field(
        None,
        gt=0,
        description="seconds without an event after which a profile and its timers are "
        "deleted (unset: kept)",
    )

    # --- rules (triggers slice) ----------------------------------------------------------
    config_dir: Path = Path("config")
    timer_interval: float = Field(1.0, gt=0, description="seconds between timer sweeps")
    timer_batch: int = Field(
        500, ge=1, description="timers claimed per partition at once; a full claim goes again"
    )
    model_dir: Path | None = Field(
        None,
        description="the prediction model directory; overrides predictions.model in rules.yaml",
    )
    config_poll_interval: float = Field(
        2.0, ge=0, description="seconds between checks of config_dir for changes (0: off)"
    )

    # --- catalog and shop-wide statistics (profiles slice) ---------------------------------
    catalog_file: Path | None = Field(
        None,
        description="JSON Lines catalog loaded into an empty Redis at start "
        "(default: <config_dir>/catalog.jsonl, when present)",
    )
    lookups_ttl: float = Field(
        30.0, ge=0, description="seconds a worker reuses the catalog and statistics it read"
    )
    lookups_cache_size: int = Field(20_000, ge=1, description="products a worker caches at most")
    gc_threshold: int = Field(
        50_000,
        ge=0,
        description="allocations between young-generation garbage collections (Python's "
        "default is 700; a batch allocates hundreds of thousands of short-lived objects); "
        "0 keeps Python's defaults",
    )

    # --- secrets (privacy) ----------------------------------------------------------------
    unsubscribe_key: SecretStr | None = Field(
        None,
        description="signs (and verifies) one-click unsubscribe links; `nudge worker` requires it",
    )
    unsubscribe_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(
        [],
        description="comma-separated (or a JSON list): keys that signed earlier links, "
        "verify only (rotation)",
    )
    unsubscribe_token_ttl: float = Field(
        60 * 86400.0, gt=0, description="seconds an unsubscribe link stays valid"
    )

    # --- collector (`nudge collector`, the HTTP API; see README "Collector (HTTP API)") ----
    collector_write_keys: Annotated[list[SecretStr], NoDecode] = Field(
        [],
        description="comma-separated (or a JSON list): the write keys HTTP clients send as "
        "the Basic auth user name, as Segment's; `nudge collector` requires one",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="the collector's public base URL (e.g. https://t.shop.example): where "
        "its unsubscribe page posts back to, and the links it says to configure",
    )
    collector_host: str = "127.0.0.1"
    collector_port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="the largest request body the collector reads"
    )
    collector_publish_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds the collector waits for the broker to acknowledge a request's "
        "events before it answers 503",
    )

    @field_validator("collector_write_keys", mode="before")
    @classmethod
    def _write_key_list(cls, value: Any) -> Any:
        """``NUDGE_COLLECTOR_WRITE_KEYS``: ``key1,key2`` or a JSON list, as the previous
        unsubscribe keys."""
        return cls._key_list(value)

    @field_validator("collector_write_keys")
    @classmethod
    def _write_keys_long_enough(cls, value: list[SecretStr]) -> Any:
        return cls._long_enough(value)

    @field_validator("public_url")
    @classmethod
    def _private_links(cls, value: str | None) -> str | None:
        """The links under it carry tokens naming users: https, or http to loopback."""
        if value is None or value.startswith("https://"):
            return value
        if urlsplit(value).hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError(
                "must be an https:// URL (its links carry tokens naming users); http:// "
                "only to this machine's loopback address, for development"
            )
        return value

    # --- ops -----------------------------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535, description="health and /metrics")
    data_dir: Path = Field(Path(".nudge"), description="Faust's local state directory")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="log lines as one JSON object each or as text (default: json for "
        "`nudge worker`, `collector` and `mailer`, text for `nudge dev`)",
    )

    # --- mailer (`nudge mailer`, see README "Mailer") -------------------------------------
    smtp_url: SecretStr = Field(
        SecretStr("smtp://localhost:25"),
        description="smtp://[user:password@]host[:port][?starttls=true][&helo=NAME], or "
        "smtps:// for TLS from the start; user and password percent-encoded; checked when "
        "`nudge mailer` starts",
    )
    smtp_timeout: float = Field(
        30.0, gt=0, description="seconds one SMTP transaction may take, connecting included"
    )
    send_failures_topic: str = Field(
        "nudge.send-failures", description="what the mailer could not deliver, and why"
    )
    mailer_concurrency: int = Field(
        8, ge=1, description="SMTP transactions in flight at once (connections kept open)"
    )
    mailer_rate_limits: Annotated[
        dict[str, float], NoDecode, BeforeValidator(parse_rate_limits)
    ] = Field(
        {"*": 100.0},
        description="messages per second per recipient domain: `gmail.com=20,*=100` (or a "
        "JSON object); `*` is every other domain, each with a bucket of its own",
    )
    mailer_retry_delay: float = Field(
        1.0, gt=0, description="seconds before the first retry; doubled each time, jittered"
    )
    mailer_retry_max_delay: float = Field(
        60.0, gt=0, description="the longest wait between two retries (seconds)"
    )
    mailer_max_attempts: int = Field(
        10,
        ge=1,
        description="4xx answers to one message before it is reported `deferred` (an "
        "unreachable server is retried without limit)",
    )
    mailer_dedup_ttl: float = Field(
        30 * 86400.0, gt=0, description="seconds a request id's delivery record is kept"
    )
    mailer_web_port: int = Field(
        6068, ge=0, le=65535, description="the mailer's health and /metrics (on web_host)"
    )

    @field_validator("mailer_rate_limits")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        return check_rate_limits(value)

    @field_validator("unsubscribe_previous_keys", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        """``NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS``: ``key1,key2`` or a JSON list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("unsubscribe_key", "unsubscribe_previous_keys", "erasure_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | list[SecretStr] | None) -> Any:
        keys = value if isinstance(value, list) else [value] if value is not None else []
        if any(len(key.get_secret_value()) < MIN_SECRET_LENGTH for key in keys):
            raise ValueError(
                f"a key must be at least {MIN_SECRET_LENGTH} characters long; "
                f"make one with: {MAKE_A_KEY}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        if urlsplit(value.get_secret_value()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
        return value

    @field_validator(
        "redis_tls_ca_file", "kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file"
    )
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file (or not readable as one)")
        return value

    @model_validator(mode="after")
    def _redis_auth(self) -> Settings:
        if self.redis_username is not None and self.redis_password is None:
            raise ValueError("NUDGE_REDIS_USERNAME needs NUDGE_REDIS_PASSWORD")
        tls = urlsplit(self.redis_url.get_secret_value()).scheme == "rediss"
        if self.redis_tls_ca_file is not None and not tls:
            raise ValueError("NUDGE_REDIS_TLS_CA_FILE needs a rediss:// NUDGE_REDIS_URL")
        return self

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"NUDGE_KAFKA_SECURITY_PROTOCOL={protocol} needs NUDGE_KAFKA_SASL_USERNAME "
                "and NUDGE_KAFKA_SASL_PASSWORD"
            )
        files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        if any(files) and not protocol.endswith("SSL"):
            raise ValueError(
                "NUDGE_KAFKA_SSL_*_FILE need NUDGE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
            )
        if self.kafka_ssl_key_file is not None and self.kafka_ssl_cert_file is None:
            raise ValueError("NUDGE_KAFKA_SSL_KEY_FILE needs NUDGE_KAFKA_SSL_CERT_FILE")
        return self

    @model_validator(mode="after")
    def _current_key(self) -> Settings:
        if self.unsubscribe_previous_keys and self.unsubscribe_key is None:
            raise ValueError(
                "NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS only verify: set NUDGE_UNSUBSCRIBE_KEY too "
                "(the key that signs new links)"
            )
        return self

    @property
    def pseudonyms(self) -> Pseudonyms:
        """The keyed hashes of erased users and addresses (the development key if unset:
        ``nudge worker`` refuses that)."""
        if self.erasure_key is None:
            return Pseudonyms()
        return Pseudonyms(self.erasure_key.get_secret_value().encode())

    @property
    def retention(self) -> timedelta | None:
        """``profile_retention`` as the rules carry it (``None``: profiles are kept)."""
        if self.profile_retention is None:
            return None
        return timedelta(seconds=self.profile_retention)

    @property
    def catalog_path(self) -> Path:
        return self.catalog_file or self.config_dir / "catalog.jsonl"

    @property
    def bootstrap_servers(self) -> list[str]:
        return [host.strip() for host in self.kafka_bootstrap.split(",") if host.strip()]


def _without_inputs(exc: ValidationError) -> ValidationError:
    """``exc`` with its messages and locations, and none of the values it was given."""
    details: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"], "input": None}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return ValidationError.from_exception_data(exc.title, details, hide_input=True)
