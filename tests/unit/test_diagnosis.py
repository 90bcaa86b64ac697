"""Why a client could not bootstrap, from log lines captured from the real broker (no broker here)."""

from __future__ import annotations

import pytest

from churnstream.errors import EXIT_PROTOCOL, AuthenticationFailed
from churnstream.kafka.diagnosis import diagnose_bootstrap
from churnstream.settings import Settings, settings_from


def _settings(**extra: str) -> Settings:
    base = {"KAFKA_BOOTSTRAP_SERVERS": "localhost:9094", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    base |= {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "churn", "KAFKA_SASL_PASSWORD": "pw"}
    return settings_from(base | extra)


CLOSED_BY_THE_BROKER = [
    "<KafkaSSLTransport [127.0.0.1:37159<-57624]>: socket disconnected",
    "<KafkaConnection node_id=bootstrap-0 broker_version=(4, 3) (disconnected)>: Connection lost: "
    "KafkaConnectionError: socket disconnected",
]


@pytest.mark.parametrize(
    ("last_request", "expected"),
    [
        ("sent SaslAuthenticateRequest", "rejected user 'churn' (SCRAM-SHA-512): invalid credentials"),
        ("sent SaslHandshakeRequest", "does not accept SASL mechanism SCRAM-SHA-512"),
        (None, "closed the connection while authenticating user 'churn'"),  # no request log captured
    ],
)
def test_a_close_during_sasl_names_the_step_even_when_the_answer_is_lost(
    last_request: str | None, expected: str
) -> None:
    """kafka-python 3.0.12 drops the broker's SASL error when it arrives with the broker's close."""
    log = ([last_request] if last_request else []) + CLOSED_BY_THE_BROKER
    error = diagnose_bootstrap(TimeoutError(), log, _settings())
    assert isinstance(error, AuthenticationFailed)
    assert expected in str(error)


def test_a_close_before_any_kafka_answer_is_a_protocol_mismatch() -> None:
    before = [line.replace("broker_version=(4, 3)", "broker_version=unknown") for line in CLOSED_BY_THE_BROKER]
    assert diagnose_bootstrap(TimeoutError(), before, _settings()).exit_code == EXIT_PROTOCOL


def test_a_sasl_client_on_a_listener_without_sasl_is_a_protocol_mismatch() -> None:
    log = [
        "<KafkaConnection node_id=bootstrap-0 broker_version=(4, 3) (initializing)>: "
        "SaslHandshake failed: IllegalSaslStateError"
    ]
    error = diagnose_bootstrap(TimeoutError(), log, _settings(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT"))
    assert error.exit_code == EXIT_PROTOCOL
    assert "does not use SASL" in str(error)
