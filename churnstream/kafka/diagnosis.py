"""Why a Kafka call failed, in one line a person can act on.

kafka-python reports most failures as a timeout or a generic error; :func:`translate` turns its
exceptions into the pipeline's own (errors.py), and :func:`bootstrap_diagnosed` reads what the
client logged while it tried to connect (bad credentials, an untrusted certificate, a TLS listener
spoken to in plaintext). :data:`REDACTOR` keeps the SASL password out of every log record.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka import errors as kafka_errors

from churnstream.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    ConfigError,
    PipelineError,
    SecurityProtocolMismatch,
    TlsError,
)
from churnstream.settings import ENV_BOOTSTRAP_SERVERS, ENV_SECURITY_PROTOCOL, ENV_SSL_CAFILE, Settings

logger = logging.getLogger(__name__)

LOCAL_BROKER_HINT = "start the local broker with 'make kafka-up'"


class _SecretRedactor:
    """Masks known secrets in every log record, whichever logger makes it and wherever it goes.

    kafka-python logs its whole configuration, password included, at DEBUG (KafkaAdminClient), and
    SASL/PLAIN's auth bytes carry the password; ``-vvv`` prints both. A record factory rather than a
    handler filter, so handlers added later (a test's, a harness's) are covered too.
    """

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if not secret:
            return
        # as it is, and as it appears inside a str or bytes repr (a SASL/PLAIN token is bytes)
        forms = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}
        with self._lock:
            if not self._secrets:
                previous = logging.getLogRecordFactory()

                def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                    record = previous(*args, **kwargs)
                    self.scrub(record)
                    return record

                logging.setLogRecordFactory(factory)
            self._secrets = tuple(sorted(set(self._secrets) | forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            return  # a malformed record: the handler reports it, as logging always does
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)  # the formatter uses exc_text when it is set
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


REDACTOR = _SecretRedactor()


def broker_unavailable(settings: Settings) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answers at {settings.bootstrap_servers} ({ENV_BOOTSTRAP_SERVERS}); "
        f"{LOCAL_BROKER_HINT}, or point {ENV_BOOTSTRAP_SERVERS} at your cluster"
    )


def not_authorized(settings: Settings, action: str, error: str) -> AuthenticationFailed:
    """The broker knows who we are and refuses ``action`` (its ACLs), as one line."""
    who = f"user {settings.sasl_username!r}" if settings.sasl_username else "this client (no SASL user)"
    return AuthenticationFailed(
        f"{who} is not authorized to {action} on {settings.bootstrap_servers} ({error}); the cluster's "
        "administrator must grant it ACLs (KAFKA_README.md, 'Connecting to a secure cluster', lists the "
        "ones the pipeline needs)"
    )


def _denied_action(exc: kafka_errors.AuthorizationError, settings: Settings) -> str:
    if isinstance(exc, kafka_errors.GroupAuthorizationFailedError):
        return f"use consumer group {settings.consumer_group}"
    if isinstance(exc, kafka_errors.TransactionalIdAuthorizationFailedError):
        return f"use transactional ids starting with {settings.consumer_group}"
    if isinstance(exc, kafka_errors.TopicAuthorizationFailedError):
        return "use a topic it needs"
    if isinstance(exc, kafka_errors.ClusterAuthorizationFailedError):
        return "perform a cluster-wide operation"
    return "perform this operation"


def translate(exc: Exception, settings: Settings) -> PipelineError:
    """A kafka-python exception -> one of ours, with a message a user can act on."""
    text = str(exc)
    for secret in settings.secrets().values():
        text = text.replace(secret.reveal(), "***")
    if isinstance(exc, kafka_errors.KafkaConfigurationError):
        return ConfigError(f"Kafka client configuration rejected: {text}")
    if isinstance(exc, kafka_errors.AuthorizationError):
        # kafka-python's text can hold the whole request and response; the error's name says it
        return not_authorized(settings, _denied_action(exc, settings), type(exc).__name__.removesuffix("Error"))
    lowered = text.lower()
    if "sasl" in lowered or "authentication" in lowered or "scram" in lowered:
        return AuthenticationFailed(
            f"authentication to {settings.bootstrap_servers} failed: {text}; check "
            "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return TlsError(f"TLS to {settings.bootstrap_servers} failed: {text}; check KAFKA_SSL_CAFILE")
    if isinstance(exc, kafka_errors.KafkaTimeoutError | kafka_errors.KafkaConnectionError):
        return broker_unavailable(settings)
    return PipelineError(f"Kafka error ({type(exc).__name__}): {text}")


@contextmanager
def kafka_errors_translated(settings: Settings) -> Iterator[None]:
    try:
        yield
    except kafka_errors.KafkaError as exc:
        raise translate(exc, settings) from None


CONNECTION_LOGGER = "kafka.net.connection"  # logs each request it sends, at DEBUG
_SASL_REQUEST = re.compile(r"Request \d+: (Sasl\w+Request)")


class _KafkaLogCapture(logging.Handler):
    """The client's warnings and errors, and which SASL requests it sent (see diagnose_bootstrap)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())
        elif record.name == CONNECTION_LOGGER and (sent := _SASL_REQUEST.search(record.getMessage())):
            self.messages.append(f"sent {sent.group(1)}")  # its name only: a token may hold a secret


# The broker had answered ApiVersions on this connection (so TLS and the Kafka protocol worked) and
# then closed it: for a SASL client, the broker refused the SASL handshake or authentication. Kafka
# answers with an error and closes the connection right after, and kafka-python 3.0.12 drops a
# response that arrives in the same read as the close (net/transport.py: _read_from_sock aborts on
# EOF without passing the bytes on), so on some attempts, or all of them, only the close is logged.
# Which request it closed after tells which step failed.
_CLOSED_AFTER_API_VERSIONS = re.compile(
    r"broker_version=\(\d[\d, ]*\) \(disconnected\)>: Connection lost: KafkaConnectionError: socket disconnected"
)


def diagnose_bootstrap(exc: Exception, client_log: list[str], settings: Settings) -> PipelineError:
    """Why bootstrap failed, from what kafka-python logged while it tried.

    kafka-python reports every bootstrap failure as the same timeout; the reason (bad
    credentials, an untrusted certificate, a TLS listener spoken to in plaintext) is only in its
    log. The broker gives the same answer for a wrong password and an unknown user, on purpose.
    """
    text = "\n".join(client_log)
    servers = settings.bootstrap_servers
    user, mechanism = settings.sasl_username, settings.sasl_mechanism
    closed_in_sasl = settings.security_protocol.startswith("SASL_") and _CLOSED_AFTER_API_VERSIONS.search(text)
    bad_credentials = AuthenticationFailed(
        f"the broker at {servers} rejected user {user!r} ({mechanism}): invalid credentials (a wrong password "
        "or an unknown user); check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    )
    bad_mechanism = AuthenticationFailed(
        f"the broker at {servers} does not accept SASL mechanism {mechanism}; "
        "set KAFKA_SASL_MECHANISM to one the cluster enables"
    )
    if "SaslAuthenticationFailed" in text:
        return bad_credentials
    if "UnsupportedSaslMechanism" in text:
        return bad_mechanism
    if "SaslHandshake failed: IllegalSaslState" in text:
        return SecurityProtocolMismatch(
            f"the listener at {servers} does not use SASL, and {ENV_SECURITY_PROTOCOL}={settings.security_protocol} "
            "does; point KAFKA_BOOTSTRAP_SERVERS at the cluster's SASL listener"
        )
    if closed_in_sasl:
        if "SaslAuthenticateRequest" in text:  # the handshake accepted the mechanism
            return bad_credentials
        if "SaslHandshakeRequest" in text:
            return bad_mechanism
        return AuthenticationFailed(  # the client's request log was not captured (see bootstrap_diagnosed)
            f"the broker at {servers} closed the connection while authenticating user {user!r} ({mechanism}): "
            "invalid credentials, or a mechanism it does not enable; check KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return TlsError(
            f"the TLS certificate of {servers} is not trusted ({detail}); set {ENV_SSL_CAFILE} to the CA that signed it"
        )
    # "[SSL" is the ssl module's error text; a bare "SSL" would match every KafkaSSLTransport line
    if settings.security_protocol in ("SSL", "SASL_SSL") and ("Handshake failed" in text or "[SSL" in text):
        return TlsError(
            f"the TLS handshake with {servers} failed; is it a TLS listener? ({ENV_SECURITY_PROTOCOL}="
            f"{settings.security_protocol})"
        )
    if "socket disconnected" in text and "ECONNREFUSED" not in text:
        return SecurityProtocolMismatch(
            f"the broker at {servers} accepted the connection but closed it without a Kafka answer: it "
            f"expects another security protocol than {ENV_SECURITY_PROTOCOL}={settings.security_protocol} "
            "(a TLS listener needs SSL or SASL_SSL)"
        )
    return translate(exc, settings)


@contextmanager
def bootstrap_diagnosed(settings: Settings) -> Iterator[None]:
    """Create a client; if it cannot bootstrap, raise one error that says why."""
    kafka_logger = logging.getLogger("kafka")
    connection_logger = logging.getLogger(CONNECTION_LOGGER)
    capture = _KafkaLogCapture()
    level, propagate, connection_level = kafka_logger.level, kafka_logger.propagate, connection_logger.level
    quiet = kafka_logger.getEffectiveLevel() > logging.WARNING
    kafka_logger.addHandler(capture)
    if quiet:  # capture the client's warnings, and its SASL requests, without printing them
        kafka_logger.setLevel(logging.WARNING)
        kafka_logger.propagate = False
        connection_logger.setLevel(logging.DEBUG)
    try:
        yield
    except kafka_errors.KafkaError as exc:
        raise diagnose_bootstrap(exc, capture.messages, settings) from None
    finally:
        kafka_logger.removeHandler(capture)
        kafka_logger.setLevel(level)
        kafka_logger.propagate = propagate
        connection_logger.setLevel(connection_level)
