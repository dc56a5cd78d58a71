"""Kafka's security settings (SASL, TLS) applied in one place: the keyword arguments of
every aiokafka client nudge makes, and the credentials of the Faust app.

The settings are checked by :class:`~streams.settings.Settings` (SASL needs a user and a
password; the TLS files must exist); here they are only translated.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

from streams.settings import Settings

if TYPE_CHECKING:  # faust is imported by the worker only (the collector need not load it)
    import faust

__all__ = [
    "faust_credentials",
    "kafka_client_options",
    "kafka_security_options",
    "kafka_ssl_context",
]


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of ``SSL`` and ``SASL_SSL`` (``None`` for the plaintext ones):
    the CA bundle if given (else the system's), and the client certificate if given."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cert, key = settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None,
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
    )
    return context


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """``bootstrap_servers`` and the security keywords, for ``AIOKafkaProducer``,
    ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient`` alike."""
    return {"bootstrap_servers": settings.bootstrap_servers, **kafka_security_options(settings)}


def kafka_security_options(settings: Settings) -> dict[str, Any]:
    """The security keywords alone (``security_protocol``, ``ssl_context``, ``sasl_*``)."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if _sasl(settings):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=_sasl_password(settings),
        )
    return options


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's ``broker_credentials`` for the same settings (``None``: plaintext)."""
    import faust

    context = kafka_ssl_context(settings)
    if _sasl(settings):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=_sasl_password(settings),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def _sasl_password(settings: Settings) -> str:
    password = settings.kafka_sasl_password  # present with SASL: Settings checks it
    return password.get_secret_value() if password is not None else ""
