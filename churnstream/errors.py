"""One exception hierarchy for the whole pipeline, and the exit code of each failure.

Library code raises these; only the CLI edge (``churnstream.cli.common.run``) turns them into a
one-line ``Error: ...`` message and the exit code below, so every script fails the same way
and tests can assert on the code. ``EXIT_CODES`` is the table the docs are generated from
(``make docs``; KAFKA_README.md, "Exit codes").
"""

from __future__ import annotations

# Exit codes. Distinct per failure class so scripts and CI can tell them apart.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BROKER = 2
EXIT_CONFIG = 3
EXIT_DATA = 4
EXIT_MODEL_MISSING = 5
EXIT_MODEL_INTEGRITY = 6
EXIT_TOPIC = 7
EXIT_AUTH = 8
EXIT_TLS = 9
EXIT_CHECKPOINT = 10
EXIT_BROKER_TOOLING = 11
EXIT_PROTOCOL = 12
EXIT_MODEL_BROKEN = 13
EXIT_USAGE = 64  # BSD sysexits EX_USAGE: argparse's own 2 would read as "broker down" here
EXIT_INTERRUPTED = 130  # 128 + SIGINT

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done: everything succeeded, or a first Ctrl-C/SIGTERM stopped it cleanly",
    EXIT_FAILURE: "the run finished but not everything succeeded (an event not acknowledged, outputs not "
    "committed, a harness criterion failed), or an unexpected error (logged with its traceback)",
    EXIT_BROKER: "no Kafka broker answers at the bootstrap servers",
    EXIT_CONFIG: "a setting (environment, .env, a flag's file) has a bad value, or the environment does not fit it "
    "(a dead-letter topic too small for the raw topic's records, another kafka-python than the pinned one)",
    EXIT_DATA: "the CSV is missing, altered or malformed",
    EXIT_MODEL_MISSING: "no model file or model card",
    EXIT_MODEL_INTEGRITY: "the model does not match its card, or was trained with another scikit-learn",
    EXIT_TOPIC: "a topic the command reads does not exist",
    EXIT_AUTH: "the broker refused the credentials or the rights (SASL, ACLs)",
    EXIT_TLS: "the TLS handshake failed or the CA file is unusable",
    EXIT_CHECKPOINT: "an unfinished batch load needs --resume or --restart, or its checkpoint is unreadable",
    EXIT_BROKER_TOOLING: "Java, Maven or a local launcher (the Kafka broker, Prometheus) failed",
    EXIT_PROTOCOL: "the broker closed the connection unanswered: it expects another security protocol",
    EXIT_MODEL_BROKEN: "the model failed a whole batch and its own canary rows: the consumer stopped without "
    "committing that batch (the events stay on the raw topic for a fixed model)",
    EXIT_USAGE: "bad command-line arguments",
    EXIT_INTERRUPTED: "interrupted: a second Ctrl-C/SIGTERM before the clean stop finished, or one before work began",
}


class PipelineError(Exception):
    """Base of every error the pipeline expects and can explain in one line."""

    exit_code = EXIT_FAILURE


class ConfigError(PipelineError):
    """A setting has a bad value: the message names the variable, the value and what is allowed."""

    exit_code = EXIT_CONFIG


class BrokerUnavailable(PipelineError):
    """No broker answered within the bootstrap timeout."""

    exit_code = EXIT_BROKER


class AuthenticationFailed(PipelineError):
    """The broker knows the client and refused it: credentials, mechanism or ACLs."""

    exit_code = EXIT_AUTH


class TlsError(PipelineError):
    """The certificate is not trusted, or the CA file holds none."""

    exit_code = EXIT_TLS


class SecurityProtocolMismatch(PipelineError):
    """The listener speaks another security protocol than the one configured."""

    exit_code = EXIT_PROTOCOL


class TopicMissing(PipelineError):
    """A topic the command reads does not exist."""

    exit_code = EXIT_TOPIC


class DataError(PipelineError):
    """The CSV is missing, altered or malformed."""

    exit_code = EXIT_DATA


class ModelMissing(PipelineError):
    """No model file or no model card."""

    exit_code = EXIT_MODEL_MISSING


class ModelIntegrityError(PipelineError):
    """The model file does not match its card, or the library versions differ."""

    exit_code = EXIT_MODEL_INTEGRITY


class ModelBroken(PipelineError):
    """The model cannot score the rows it scored at training: stop, rather than dead-letter the stream."""

    exit_code = EXIT_MODEL_BROKEN


class CheckpointConflict(PipelineError):
    """The producer's checkpoint and the requested load disagree."""

    exit_code = EXIT_CHECKPOINT


class BrokerToolingError(PipelineError):
    """Java, Maven or a local launcher (the Kafka broker, Prometheus) failed."""

    exit_code = EXIT_BROKER_TOOLING


class InvalidEvent(PipelineError):
    """An event that cannot be scored. Never escapes the consumer: it becomes a dead letter.

    ``stage`` is where it failed (``decode``, ``validate`` or ``score``) and the
    message says why in words a person can act on.
    """

    def __init__(self, stage: str, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.event_id = event_id  # when the event got far enough to have one (for the log line)


def error_classes() -> dict[int, list[str]]:
    """Exit code -> the exception classes that end with it (for the generated docs)."""
    by_code: dict[int, list[str]] = {}
    pending = [PipelineError]
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if kind is not InvalidEvent:
            by_code.setdefault(kind.exit_code, []).append(kind.__name__)
    return {code: sorted(names) for code, names in by_code.items()}
