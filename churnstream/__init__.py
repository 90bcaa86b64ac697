"""telco-churn-stream: real-time churn scoring on Apache Kafka.

The package is layered so each job has one folder (docs/architecture.md walks an event through it):

- ``contract``: the event schema and validator, and the output formats (predictions, dead letters);
- ``ml``: the data set, features, the model and its card, training;
- ``kafka``: client factories, error diagnosis, topics, groups, outages, reading a topic to its end;
- ``producer`` and ``consumer``: the two halves of the runtime path; ``replay`` sends dead letters back;
- ``cli``: the thin edge (parsers, logging, exit codes, terminal output);
- ``localkafka`` and ``harness``: the local broker launcher and the validation harness, which the
  runtime path never imports.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("telco-churn-stream")
except PackageNotFoundError:  # run from a checkout without being installed
    __version__ = "0+unknown"
