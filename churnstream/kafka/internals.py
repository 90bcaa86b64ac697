"""What this project relies on inside kafka-python 3.0.12, checked once per process before a client is made.

Three workarounds lean on the client's insides, not its API: ``clients.CoordinatorFailoverNetClient``
subclasses its network client and changes what ``await_ready`` answers (docs/notes/kafka-python-3.0.12.md);
``outage`` and ``diagnosis`` read its log lines to tell an outage, bad credentials or an untrusted
certificate apart; ``topics.broker_version`` calls its admin's ``_client``. A newer kafka-python may
move any of them, and then the workarounds would fail quietly (a hang, a wrong diagnosis). So the
version is pinned exactly, with hashes (requirements.lock), and :func:`check_client` refuses to
start, in one line, when what it finds is not what the workarounds were written for.
"""

from __future__ import annotations

import functools
import inspect
from importlib import import_module

from churnstream.errors import ConfigError

PINNED_VERSION = "3.0.12"

# kafka-python's log lines the outage monitor and the bootstrap diagnosis read, by the module that logs them.
LOG_TEXTS: dict[str, tuple[str, ...]] = {
    "kafka.net.manager": ("Connection failed:", "Bootstrap connection to", "Handshake failed"),
    "kafka.net.connection": (
        "Request timed out",
        "Connection lost:",
        "SaslHandshake failed",
        "broker_version=",
        "Request %d: %s",
    ),
    "kafka.net.transport": ("socket disconnected",),
}
# Where the workarounds reach inside: (module, class, attribute).
ATTRIBUTES = (
    ("kafka.net.compat", "KafkaNetClient", "await_ready"),
    ("kafka.producer.sender", "Sender", "_maybe_send_pending_request"),
    ("kafka.producer.kafka", "KafkaProducer", "send_offsets_to_transaction"),
    ("kafka.consumer.subscription_state", "SubscriptionState", "position"),  # group.fetch_position
)
FIX = "install the pinned packages (make venv; requirements.lock pins kafka-python==" + PINNED_VERSION + ")"


def problems() -> list[str]:
    """What differs from what the workarounds were written for; empty when all is as expected."""
    import kafka  # noqa: PLC0415

    found: list[str] = []
    if kafka.__version__ != PINNED_VERSION:
        found.append(f"kafka-python {kafka.__version__} is installed, not {PINNED_VERSION}")
    for module_name, class_name, attribute in ATTRIBUTES:
        try:
            kind = getattr(import_module(module_name), class_name)
        except (ImportError, AttributeError):
            found.append(f"{module_name}.{class_name} is gone")
            continue
        if not hasattr(kind, attribute):
            found.append(f"{module_name}.{class_name}.{attribute} is gone")
    for module_name, texts in LOG_TEXTS.items():
        try:
            source = inspect.getsource(import_module(module_name))
        except (ImportError, OSError):
            found.append(f"{module_name} cannot be read")
            continue
        found += [f"{module_name} no longer logs {text!r}" for text in texts if text not in source]
    admin_source = inspect.getsource(import_module("kafka.admin.client"))
    if "self._client" not in admin_source:
        found.append("KafkaAdminClient has no _client")
    return found


@functools.cache
def check_client() -> None:
    """Raise ConfigError (exit 3) once, in one line, when kafka-python is not what the workarounds expect."""
    found = problems()
    if found:
        raise ConfigError(
            f"this project's workarounds for kafka-python {PINNED_VERSION} do not fit the installed client ("
            + "; ".join(found[:3])
            + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
            + f"): {FIX}"
        )
