"""Kafka's own command-line tools (kafka-topics, kafka-consumer-groups, ...), run against the local cluster."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from churnstream.errors import BrokerToolingError
from churnstream.localkafka.install import TOOLS_LOG4J, fetch_libs, java_command, require_java
from churnstream.localkafka.layout import Layout

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


def run_tool(layout: Layout, name: str, args: Sequence[str]) -> int:
    """Run one of Kafka's own tools (kafka-topics, kafka-consumer-groups, ...) against the cluster."""
    if name.endswith(".sh"):
        name = name[:-3]
    if name not in TOOLS:
        raise BrokerToolingError(f"unknown tool {name!r}; choose one of: {', '.join(sorted(TOOLS))}")
    require_java()
    fetch_libs()
    args = list(args)
    uses_bootstrap = name not in TOOLS_WITHOUT_BOOTSTRAP
    if uses_bootstrap and not any(a.startswith(("--bootstrap-server", "--bootstrap-controller")) for a in args):
        args = ["--bootstrap-server", layout.bootstrap_servers, *args]
    command = java_command(TOOLS[name], TOOLS_LOG4J, layout.home / "tool-logs") + args
    return subprocess.run(command, check=False).returncode
