"""Kafka's security settings: what every aiokafka client and the Faust app are given."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from streams.kafka_security import faust_credentials, kafka_client_options, kafka_ssl_context
from streams.settings import Settings

SECRET = "sasl-Pa55word-not-shown"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key (also used as the CA bundle)."""
    where = tmp_path_factory.mktemp("certs")
    cert, key = where / "client.pem", where / "client.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*command, "-subj", "/CN=nudge-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return {"ca": cert, "cert": cert, "key": key}


def test_plaintext_is_the_default_and_adds_nothing_but_the_servers() -> None:
    settings = Settings(kafka_bootstrap="a:9092, b:9092")
    assert kafka_client_options(settings) == {
        "bootstrap_servers": ["a:9092", "b:9092"],
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(settings) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism: str) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="ada",
        kafka_sasl_password=SECRET,
    )
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in options
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("ada", SECRET)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.mechanism.value == mechanism
    assert (credentials.username, credentials.password) == ("ada", SECRET)
    assert SECRET not in repr(credentials) and SECRET not in repr(settings)


def test_sasl_ssl_carries_a_context_with_the_ca_and_client_certificate(
    certs: dict[str, Path],
) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ada",
        kafka_sasl_password=SECRET,
        kafka_ssl_ca_file=certs["ca"],
        kafka_ssl_cert_file=certs["cert"],
        kafka_ssl_key_file=certs["key"],
    )
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "nudge-test"),),)]
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)


def test_ssl_without_files_trusts_the_system_cas() -> None:
    settings = Settings(kafka_security_protocol="SSL")
    context = kafka_ssl_context(settings)
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"
    assert kafka_client_options(settings)["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "NUDGE_KAFKA_SASL_USERNAME"),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_username": "ada",
                "kafka_sasl_password": None,
            },
            "NUDGE_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/no/such.pem"}, "no such"),
        ({"kafka_ssl_ca_file": Path(__file__)}, "SSL or SASL_SSL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_key_file": Path(__file__)}, "CERT_FILE"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_bad_kafka_security_is_refused_clearly(values: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**{"kafka_sasl_password": SECRET, **values})
    assert says in str(info.value) and SECRET not in str(info.value)
