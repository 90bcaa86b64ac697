"""Kafka's own command-line tools (kafka-topics, kafka-consumer-groups, ...), run with the pipeline's settings.

They reach the cluster the pipeline reaches, as the same user: KAFKA_BOOTSTRAP_SERVERS, and for a
secure cluster a ``--command-config`` file written from the same settings (kafka.properties) into
a private temporary folder, removed when the tool exits. Left at their defaults, the settings point
at the local cluster.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from churnstream.errors import BrokerToolingError
from churnstream.files import write_private
from churnstream.kafka.properties import java_properties
from churnstream.localkafka.install import TOOLS_LOG4J, fetch_libs, java_command, require_java
from churnstream.localkafka.layout import Layout
from churnstream.settings import DEFAULT_BOOTSTRAP_SERVERS, Settings

logger = logging.getLogger(__name__)

# Kafka's shell scripts, by the main class each one runs.
TOOLS: dict[str, str] = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-broker-api-versions": "org.apache.kafka.tools.BrokerApiVersionsCommand",
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-acls": "org.apache.kafka.tools.AclCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "kafka-transactions": "org.apache.kafka.tools.TransactionsCommand",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "kafka-features": "org.apache.kafka.tools.FeatureCommand",
    "kafka-cluster": "org.apache.kafka.tools.ClusterTool",
    "kafka-dump-log": "org.apache.kafka.tools.DumpLogSegments",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-storage": "kafka.tools.StorageTool",
}
TOOLS_WITHOUT_BOOTSTRAP = {"kafka-dump-log", "kafka-producer-perf-test", "kafka-storage"}
# Every tool that reaches a broker takes --command-config in Kafka 4.3, except kafka-cluster (--config,
# after its sub-command).
TOOLS_WITHOUT_COMMAND_CONFIG = {*TOOLS_WITHOUT_BOOTSTRAP, "kafka-cluster"}


def run_tool(layout: Layout, name: str, args: Sequence[str], settings: Settings | None = None) -> int:
    """Run one of Kafka's own tools (kafka-topics, kafka-consumer-groups, ...) against the cluster.

    With ``settings``, it goes where the pipeline goes, as the pipeline's user; else to ``layout``.
    """
    if name.endswith(".sh"):
        name = name[:-3]
    if name not in TOOLS:
        raise BrokerToolingError(f"unknown tool {name!r}; choose one of: {', '.join(sorted(TOOLS))}")
    require_java()
    fetch_libs()
    args = list(args)
    bootstrap = layout.bootstrap_servers
    if settings is not None and settings.bootstrap_servers != DEFAULT_BOOTSTRAP_SERVERS:
        bootstrap = settings.bootstrap_servers
    uses_bootstrap = name not in TOOLS_WITHOUT_BOOTSTRAP
    if uses_bootstrap and not any(a.startswith(("--bootstrap-server", "--bootstrap-controller")) for a in args):
        args = ["--bootstrap-server", bootstrap, *args]
    secured = settings is not None and (settings.security_protocol != "PLAINTEXT" or settings.client_options)
    with tempfile.TemporaryDirectory(prefix="churn-tool-") as private:  # mode 0700: only we read it
        if secured and not any(a.startswith("--command-config") for a in args):
            assert settings is not None
            if name in TOOLS_WITHOUT_COMMAND_CONFIG:
                logger.warning("%s takes no --command-config: it runs without the security settings", name)
            else:
                args = ["--command-config", str(_client_config(settings, Path(private))), *args]
        command = java_command(TOOLS[name], TOOLS_LOG4J, layout.home / "tool-logs") + args
        return subprocess.run(command, check=False).returncode


def _client_config(settings: Settings, folder: Path) -> Path:
    """The settings as a Java properties file (and a PEM keystore for mutual TLS) in ``folder``."""
    keystore = None
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        if settings.ssl_keyfile == settings.ssl_certfile:  # already one file (a Java PEM keystore)
            keystore = settings.ssl_keyfile
        else:  # Java wants the key and the chain in one PEM file
            keystore = folder / "keystore.pem"
            write_private(keystore, settings.ssl_keyfile.read_text() + "\n" + settings.ssl_certfile.read_text())
    path = folder / "client.properties"
    write_private(path, java_properties(settings, str(keystore) if keystore else None))
    return path
