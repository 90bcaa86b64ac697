"""Kafka clients built from Settings: the same security options and bootstrap timeout for all.

Every client gets the same security options and a short bootstrap timeout, so a broker that
is down is reported in one line within seconds instead of a 30 s hang. Retries after that are
kafka-python's own (with backoff); nothing here loops around the client.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.future import Future
from kafka.net.compat import KafkaNetClient

from churnstream.errors import ConfigError, TlsError
from churnstream.kafka.diagnosis import REDACTOR, bootstrap_diagnosed
from churnstream.kafka.internals import check_client
from churnstream.settings import ENV_SSL_CAFILE, ENV_SSL_CERTFILE, ENV_SSL_KEY_PASSWORD, ENV_SSL_KEYFILE, Settings

logger = logging.getLogger(__name__)

BOOTSTRAP_TIMEOUT_MS = 6_000  # "one line within 10 s" when the broker is down: start-up and model load included
# kafka-python's default is 30 s: after a 10 s outage its clients waited 12-25 s more (measured)
# before trying again, by which time a static group member's session had expired. The Java
# client's default (reconnect.backoff.max.ms) is 1 s; the backoff stays exponential with jitter.
RECONNECT_BACKOFF_MAX_MS = 1_000
# Every event is acknowledged or failed within kafka-python's delivery timeout (120 s by default),
# so a flush needs no longer. But after an outage longer than that, kafka-python 3.0.12's flush was
# seen to wait for good on events it had already expired (docs/notes/kafka-python-3.0.12.md):
# past this bound a flush gives up (KafkaTimeoutError), and what is still pending counts as failed.
FLUSH_TIMEOUT_S = 120 + 30


def _check_cafile(path: Path) -> str:
    """The CA file, once Python's ssl module has loaded it: a bad file fails here, at once.

    Without this, a file that holds no PEM certificate fails inside every connection attempt, and
    after the bootstrap timeout it looks like a broker that is down.
    """
    if not path.is_file():
        raise ConfigError(f"{ENV_SSL_CAFILE}={str(path)!r} is not valid: the CA file does not exist")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsError(
            f"{ENV_SSL_CAFILE}={str(path)!r} is not usable: it holds no PEM CA certificate ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise TlsError(f"{ENV_SSL_CAFILE}={str(path)!r} is not usable: {exc.strerror or exc}") from None
    return str(path)


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python's own security options for these settings (no hand-written TLS)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile is not None:
            options["ssl_cafile"] = _check_cafile(settings.ssl_cafile)
        options["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:  # mutual TLS
            options.update(_client_certificate(settings))
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None
        password = settings.sasl_password.reveal()
        REDACTOR.add(password)  # before any client can log it
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = password
    return options


def _client_certificate(settings: Settings) -> dict[str, Any]:
    """The client's certificate and key, once Python's ssl module has loaded them: a bad pair fails
    here, at once, in one line, not inside every connection attempt."""
    assert settings.ssl_certfile is not None and settings.ssl_keyfile is not None
    password = settings.ssl_key_password.reveal() if settings.ssl_key_password else None
    for path, variable in ((settings.ssl_certfile, ENV_SSL_CERTFILE), (settings.ssl_keyfile, ENV_SSL_KEYFILE)):
        if not path.is_file():
            raise ConfigError(f"{variable}={str(path)!r} is not valid: the file does not exist")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(
            f"the client certificate {settings.ssl_certfile} and key {settings.ssl_keyfile} are not usable "
            f"together ({getattr(exc, 'reason', None) or exc}); check {ENV_SSL_CERTFILE}, {ENV_SSL_KEYFILE} and "
            f"{ENV_SSL_KEY_PASSWORD}"
        ) from None
    if password:
        REDACTOR.add(password)
    return {
        "ssl_certfile": str(settings.ssl_certfile),
        "ssl_keyfile": str(settings.ssl_keyfile),
        "ssl_password": password,
    }


def _base_options(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        **dict(settings.client_options),  # --command-config / -X tuning (kafka.properties allows which)
        **security_options(settings),
    }


def make_admin(settings: Settings, client_id: str = "churn-admin") -> KafkaAdminClient:
    check_client()
    with bootstrap_diagnosed(settings):
        return KafkaAdminClient(**_base_options(settings, client_id))


class CoordinatorFailoverNetClient(KafkaNetClient):
    """kafka-python's network client, except that a node it cannot reach is "not ready", not an error.

    Works around a kafka-python 3.0.12 bug that hangs a transactional producer for good when the
    broker coordinating its transaction or its consumer group dies: the sender asks
    ``await_ready(coordinator)``, which raises instead of returning False; the sender's exception
    path then looks the coordinator up again but, because it still holds the dead node's id, never
    re-queues the request it was sending (``Sender._maybe_send_pending_request``). That request's
    result never completes, so ``send_offsets_to_transaction()`` or ``commit_transaction()``,
    which wait without a timeout, block forever (seen with ``TxnOffsetCommit`` when the group
    coordinator was SIGKILLed, tests/test_cluster.py). Answering False takes the sender's other
    path, which re-queues the request behind a fresh coordinator lookup, as the Java client does.
    Passed through KafkaProducer's own ``kafka_client`` option; the sender is its only caller.
    """

    def await_ready(self, node_id: Any, timeout_ms: int = 30000) -> bool:
        try:
            return super().await_ready(node_id, timeout_ms=timeout_ms)
        except kafka_errors.KafkaConnectionError:
            return False


def make_producer(settings: Settings, client_id: str = "churn-producer", **overrides: Any) -> KafkaProducer:
    check_client()
    options = {
        **_base_options(settings, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "lz4",
        "kafka_client": CoordinatorFailoverNetClient,
        **overrides,
    }
    with bootstrap_diagnosed(settings):
        return KafkaProducer(**options)


def first_failure(futures: Iterable[Future]) -> BaseException | None:
    """After flush(): the first send that failed, or is still pending. Check every one before a commit:
    kafka-python fails a transaction by itself for some errors only, and commits it without a record
    whose send failed otherwise (a retriable error that outlived the delivery timeout)."""
    for future in futures:
        if not future.is_done:
            return kafka_errors.KafkaTimeoutError("a send was not acknowledged after flush()")
        if future.exception is not None:
            return future.exception
    return None


def make_consumer(
    settings: Settings, *topics: str, client_id: str = "churn-consumer", **overrides: Any
) -> KafkaConsumer:
    check_client()
    options = {**_base_options(settings, client_id), **overrides}
    with bootstrap_diagnosed(settings):
        return KafkaConsumer(*topics, **options)
