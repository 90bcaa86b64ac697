"""A local Apache Kafka (KRaft) the project starts itself, without Docker; for the demo, tests and benchmarks.

Not part of the runtime path: the producer, consumer and replay never import it. ``layout`` (homes
and ports), ``install`` (Java, Kafka's jars from Maven Central), ``cluster`` (start, stop, wipe),
``secure`` and ``acl`` (the SASL_SSL listener and its rights), ``tools`` (Kafka's own CLIs).
"""

from churnstream.localkafka.cluster import (
    down,
    node_pid,
    provision_pipeline,
    reset,
    start_node,
    status,
    stop_node,
    up,
    wait_until_ready,
)
from churnstream.localkafka.install import KAFKA_VERSION, fetch_libs, require_java
from churnstream.localkafka.layout import DEFAULT_HOME, Layout, load_layout, port_in_use, private_layout

__all__ = [
    "DEFAULT_HOME",
    "KAFKA_VERSION",
    "Layout",
    "down",
    "fetch_libs",
    "load_layout",
    "node_pid",
    "port_in_use",
    "private_layout",
    "provision_pipeline",
    "require_java",
    "reset",
    "start_node",
    "status",
    "stop_node",
    "up",
    "wait_until_ready",
]
