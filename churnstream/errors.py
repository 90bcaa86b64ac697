"""One exception hierarchy for the whole pipeline.

Library code raises these; only the CLI edge (``churnstream.cli.run``) turns
them into a one-line ``Error: ...`` message and the exit code below, so every
script fails the same way and tests can assert on the code.
"""

from __future__ import annotations

# Exit codes. Distinct per failure class so scripts and CI can tell them apart.
EXIT_OK = 0
EXIT_FAILURE = 1  # the run finished but not everything succeeded, or an unexpected error
EXIT_BROKER = 2  # no broker answers at the bootstrap servers
EXIT_CONFIG = 3  # a setting (environment or .env) has a bad value
EXIT_DATA = 4  # the CSV is missing, altered, or malformed
EXIT_MODEL_MISSING = 5  # no model file or model card
EXIT_MODEL_INTEGRITY = 6  # the model file does not match its card, or the library versions differ
EXIT_TOPIC = 7  # a topic the command needs does not exist
EXIT_AUTH = 8  # the broker refused our credentials or our rights
EXIT_TLS = 9  # the TLS handshake failed or the CA file is unusable
EXIT_CHECKPOINT = 10  # an unfinished batch checkpoint needs --resume or --restart
EXIT_BROKER_TOOLING = 11  # Java, Maven or the local broker launcher failed
EXIT_PROTOCOL = 12  # the broker closed the connection unanswered: it expects another security protocol
EXIT_USAGE = 64  # bad command-line arguments (BSD sysexits EX_USAGE)
EXIT_INTERRUPTED = 130  # stopped by a second Ctrl-C/SIGTERM before the clean stop finished (128 + SIGINT)


class PipelineError(Exception):
    """Base of every error the pipeline expects and can explain in one line."""

    exit_code = EXIT_FAILURE


class ConfigError(PipelineError):
    exit_code = EXIT_CONFIG


class BrokerUnavailable(PipelineError):
    exit_code = EXIT_BROKER


class AuthenticationFailed(PipelineError):
    exit_code = EXIT_AUTH


class TlsError(PipelineError):
    exit_code = EXIT_TLS


class SecurityProtocolMismatch(PipelineError):
    exit_code = EXIT_PROTOCOL


class TopicMissing(PipelineError):
    exit_code = EXIT_TOPIC


class DataError(PipelineError):
    exit_code = EXIT_DATA


class ModelMissing(PipelineError):
    exit_code = EXIT_MODEL_MISSING


class ModelIntegrityError(PipelineError):
    exit_code = EXIT_MODEL_INTEGRITY


class CheckpointConflict(PipelineError):
    exit_code = EXIT_CHECKPOINT


class BrokerToolingError(PipelineError):
    exit_code = EXIT_BROKER_TOOLING


class InvalidEvent(PipelineError):
    """An event that cannot be scored. Never escapes the consumer: it becomes a dead letter.

    ``stage`` is where it failed (``decode``, ``validate`` or ``score``) and the
    message says why in words a person can act on.
    """

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
