"""What this project relies on inside kafka-python 3.0.12, checked once per process before a client is made.

Four workarounds lean on the client's insides, not its API: ``records`` reads the records the
client's parser gives up on (a header key that is not UTF-8, a batch it cannot decompress) and is
checked by reading two such records at start-up; ``clients.CoordinatorFailoverNetClient``
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
    ("kafka.record.default_records", "DefaultRecordBatch", "_read_msg"),  # records
    ("kafka.record.default_records", "DefaultRecordBatch", "_maybe_uncompress"),
)
# The code the records workaround stands on, by module: the parser it wraps, the fetcher and the
# producer that take a header key's bytes from its encode(), the batch's buffer it replaces.
SOURCE_TEXTS: dict[str, tuple[str, ...]] = {
    "kafka.record.default_records": (
        'h_key = buffer[pos: pos + h_key_len].decode("utf-8")',
        "msg = self._read_msg()",
        "self._maybe_uncompress()",
        "if self._pos != len(self._buffer):",
        "self._num_records = self._header_data[12]",
        'h_key = h_key.encode("utf-8")',
        'h_key_len = len(h_key.encode("utf-8"))',
    ),
    "kafka.consumer.fetcher": ('len(h_key.encode("utf-8"))', "for record in batch:"),
    "kafka.producer.kafka": ("isinstance(item[0], str)", 'len(h_key.encode("utf-8"))'),
}
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
        source = _source(module_name, found)
        found += [f"{module_name} no longer logs {text!r}" for text in texts if text not in source]
    for module_name, texts in SOURCE_TEXTS.items():
        source = _source(module_name, found)
        found += [f"{module_name} no longer has {text!r}" for text in texts if text not in source]
    admin_source = inspect.getsource(import_module("kafka.admin.client"))
    if "self._client" not in admin_source:
        found.append("KafkaAdminClient has no _client")
    return found


def _source(module_name: str, found: list[str]) -> str:
    try:
        return inspect.getsource(import_module(module_name))
    except (ImportError, OSError):
        found.append(f"{module_name} cannot be read")
        return ""


@functools.cache
def check_client() -> None:
    """Raise ConfigError (exit 3) once, in one line, when kafka-python is not what the workarounds
    expect; else put the records workaround in place and check that it took effect."""
    found = problems()
    if not found:
        from churnstream.kafka import records  # noqa: PLC0415 - patches kafka-python: only once it is checked

        records.install()
        found = [f"the records workaround: {problem}" for problem in records.self_test()]
    if found:
        raise ConfigError(
            f"this project's workarounds for kafka-python {PINNED_VERSION} do not fit the installed client ("
            + "; ".join(found[:3])
            + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
            + f"): {FIX}"
        )
