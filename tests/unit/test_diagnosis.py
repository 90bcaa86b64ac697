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


# --------------------------------------------------------------------- the client's insides (issue 13)


def test_the_installed_client_is_what_the_workarounds_were_written_for() -> None:
    from churnstream.kafka import internals  # noqa: PLC0415

    assert internals.problems() == []


def test_another_client_version_or_a_moved_log_line_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a kafka-python upgrade that moved a log line or the private client would have made the
    outage monitor, the diagnosis or the failover workaround fail quietly."""
    import kafka  # noqa: PLC0415

    from churnstream.errors import ConfigError  # noqa: PLC0415
    from churnstream.kafka import internals  # noqa: PLC0415

    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    monkeypatch.setitem(internals.LOG_TEXTS, "kafka.net.manager", ("Connection failed:", "a line it never logs"))
    found = internals.problems()
    assert found == [
        "kafka-python 3.1.0 is installed, not 3.0.12",
        "kafka.net.manager no longer logs 'a line it never logs'",
    ]
    internals.check_client.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"do not fit the installed client \(kafka-python 3\.1\.0 .*make venv"):
            internals.check_client()
    finally:
        internals.check_client.cache_clear()


def test_the_lock_pins_every_requirement_with_hashes() -> None:
    """A minor upgrade cannot slip in: make installs requirements.lock with --require-hashes."""
    from tests.helpers import ROOT, lock_pins  # noqa: PLC0415

    lock = (ROOT / "requirements.lock").read_text()
    pins = lock_pins(ROOT / "requirements.lock")
    assert lock.count("--hash=sha256:") >= len(pins) > 30
    for requirements in ("requirements-kafka.txt", "requirements-report.txt", "requirements-dev.txt"):
        for line in (ROOT / requirements).read_text().splitlines():
            if line and not line.startswith("#"):
                name, version = line.split("==")
                assert pins[name.lower()] == version, f"{requirements}: {line} is not what the lock has"
    assert pins["kafka-python"] == "3.0.12"
