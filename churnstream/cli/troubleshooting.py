"""The troubleshooting page (docs/troubleshooting.md), one section per exit code: what it means,
the likely causes, the command that tells them apart, and the fix.

The meanings and the exception classes come from churnstream/errors.py; the causes are written here,
by hand, beside the code, and ``REMEDIES`` must have an entry for every code of ``EXIT_CODES``
(tests/unit/test_docs.py), so a new exit code cannot ship without its page section.
Commands are written as they run from a checkout (``.venv/bin/...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from churnstream.errors import (
    EXIT_AUTH,
    EXIT_BROKER,
    EXIT_BROKER_TOOLING,
    EXIT_CHECKPOINT,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_MODEL_BROKEN,
    EXIT_MODEL_INTEGRITY,
    EXIT_MODEL_MISSING,
    EXIT_OK,
    EXIT_PROTOCOL,
    EXIT_TLS,
    EXIT_TOPIC,
    EXIT_USAGE,
    error_classes,
)


@dataclass(frozen=True)
class Remedy:
    cause: str  # what is wrong, in the reader's words
    check: str  # the command (or the line to read) that shows whether this is the cause
    fix: str


SECURE = "[the secure how-to's error table](howto/secure-cluster.md#errors-and-their-fixes)"

REMEDIES: dict[int, tuple[Remedy, ...]] = {
    EXIT_OK: (
        Remedy(
            "`consumer.py --mode batch` ends at once with `consumed=0`: its group has committed offsets at the "
            "end of the topic already (it read these events before)",
            '`make kafka-tool ARGS="kafka-consumer-groups --describe --group telco-churn-consumer-group"`: '
            "`LAG` is 0 on every partition",
            "score them again under another group (`KAFKA_CONSUMER_GROUP=...`), or move the group back with "
            "`kafka-consumer-groups --reset-offsets --to-earliest --execute` while no consumer runs",
        ),
        Remedy(
            "a first Ctrl-C or SIGTERM stopped the command: that is a clean stop, not a failure",
            "the last log line: `SIGINT received: the last batch is committed; stopping`",
            "nothing to fix; a batch load continues with `producer.py --mode batch --resume`",
        ),
    ),
    EXIT_FAILURE: (
        Remedy(
            "the producer: events not acknowledged, usually a broker unreachable for longer than the delivery "
            "timeout (120 s)",
            "the summary's `failed` count and the `errors` it lists",
            "bring the broker back; a batch load then sends what is missing with `--resume`",
        ),
        Remedy(
            "the consumer: outputs not delivered, five transactions in a row aborted, or a transactional call "
            "that did not return; nothing of the batch is committed",
            "the `Error:` line, and the warnings before it (each abort says why)",
            "fix what the line names (the broker, an output topic deleted, a missing Write right); restart the "
            "consumer: it processes the batch again",
        ),
        Remedy(
            "the consumer: `another consumer took over this consumer's transactional id`: two live consumers "
            "with one instance id",
            "each consumer's first log line names its id (`consumer vm-0 (group ..., transactional id ...~vm-0) "
            "starting`)",
            "give each consumer its own id ([scaling out](howto/scale-out.md#consumers-on-several-machines)); "
            "never one `CONSUMER_INSTANCE_ID` in a shared `.env`",
        ),
        Remedy(
            "replay: fenced by another replay of the same group, a send that failed, or a read with no "
            "progress for 120 s",
            "the `Error:` line",
            "run it again: nothing of a failed chunk was marked replayed ([replay](howto/replay.md))",
        ),
        Remedy(
            "`test_pipeline.py`: a goal or a check failed",
            "the `[FAIL]` lines of its output, and its results JSON",
            "read [the harness](harness.md) for what each check means",
        ),
        Remedy(
            "an unexpected error: a line `unexpected error` with a traceback",
            "the traceback",
            "a bug: report it with the traceback and the command",
        ),
    ),
    EXIT_BROKER: (
        Remedy(
            "the local broker is not running",
            "`make kafka-status`",
            "`make kafka-up`",
        ),
        Remedy(
            "`KAFKA_BOOTSTRAP_SERVERS` names the wrong host or port (a `.env` from elsewhere, a typo)",
            "`.venv/bin/python config.py` shows the value in effect",
            "fix it in `.env` or the environment, or pass `--bootstrap-server`",
        ),
        Remedy(
            "the broker answers the first connection but advertises an address this machine cannot reach "
            "(a broker in a container advertising its own name)",
            '`make kafka-tool ARGS="kafka-broker-api-versions"` from the same machine',
            "make the broker advertise a listener this client can reach (its `advertised.listeners`)",
        ),
    ),
    EXIT_CONFIG: (
        Remedy(
            "a setting has a bad value: the line names the variable, the value and what is allowed",
            "`.venv/bin/python config.py` (the password shows as `***`)",
            "fix it; every setting, its default and what it takes: [configuration](reference/configuration.md)",
        ),
        Remedy(
            "the dead-letter topic is too small for the raw topic's records (`dead-letter topic ... takes records "
            "up to ...`)",
            "the line names both limits",
            "run the `kafka-configs --alter ... max.message.bytes=...` command the line gives",
        ),
        Remedy(
            "kafka-python is not the pinned 3.0.12 (`this project's workarounds for kafka-python 3.0.12 do not fit "
            "the installed client`)",
            "`.venv/bin/pip show kafka-python`",
            "`make venv`, or `pip install -r requirements-kafka.txt` in your own environment",
        ),
        Remedy(
            "the metrics port is taken by another process, or `METRICS_ADDRESS` is not this host's",
            "`ss -ltnp` lists who listens where",
            "choose another `--metrics-port`, or the right address",
        ),
        Remedy(
            "an event schema outside the supported subset",
            "`.venv/bin/churn-schema check FILE`",
            "change the keyword it names ([the subset](reference/event-schema.md))",
        ),
        Remedy(
            "an unknown model version (`churn-model promote`, `--shadow-model`), or a `-X` key the pipeline sets "
            "itself",
            "`.venv/bin/churn-model list`",
            "use a version it lists; leave that key to the pipeline",
        ),
    ),
    EXIT_DATA: (
        Remedy(
            "the Telco CSV is missing, or not the published file (its sha256 differs)",
            "`.venv/bin/python -m churnstream.data --check`",
            "`make data` fetches it again",
        ),
        Remedy(
            "a row of your CSV does not fit the event schema: the line names the file, the line and the column",
            "that line of the file (`sed -n 'LINEp' FILE`)",
            "fix the row, or `producer.py --skip-bad-rows` to leave bad rows out",
        ),
        Remedy(
            "the label column has other than two values, or `--positive` is not one of them",
            "`cut -d, -f COLUMN FILE | sort | uniq -c`",
            "name the churn value with `--positive VALUE`, or clean the label",
        ),
    ),
    EXIT_MODEL_MISSING: (
        Remedy(
            "no model trained yet, or the store has no current version",
            "`.venv/bin/churn-model list`",
            "`make model`, or `churn-model promote VERSION`",
        ),
        Remedy(
            "`MODEL_STORE` or `MODEL_PATH` points elsewhere (`MODEL_PATH=models/sklearn_pipeline.pkl` is the layout "
            "before the model store)",
            "`.venv/bin/python config.py`",
            "empty `MODEL_PATH` to follow the store's current version; fix `MODEL_STORE`",
        ),
    ),
    EXIT_MODEL_INTEGRITY: (
        Remedy(
            "the model was trained with another scikit-learn than the one installed",
            "the line names both versions",
            "retrain with the command the line gives (or `make model` for the current version)",
        ),
        Remedy(
            "the model file was changed after training (its sha256 differs from its card), or its card is malformed",
            "the line names the file",
            "promote another version (`churn-model list`, `churn-model promote VERSION`) or retrain",
        ),
        Remedy(
            "an imported pickle cannot be loaded here, has no `predict_proba`, or fails on the schema's frame",
            "the line says which",
            "[your own model](howto/own-model.md#2-import-it): pickle it with this project's scikit-learn",
        ),
    ),
    EXIT_TOPIC: (
        Remedy(
            "the consumer's input topic was not created within `--wait-for-topic` (60 s by default): no producer "
            "ran yet",
            '`make kafka-tool ARGS="kafka-topics --list"`',
            "start the producer (it creates the raw topic), or create the topics first with "
            "`.venv/bin/python test_pipeline.py --verify-only`; give the consumer longer with "
            "`CONSUMER_WAIT_FOR_TOPIC_S`",
        ),
        Remedy(
            "the producer and the consumer use different topic names (another `.env`, `KAFKA_TOPIC_RAW` set in one "
            "shell only; `make demo`'s topics end in `-demo`)",
            "`.venv/bin/python config.py` in each shell",
            "give both the same `KAFKA_TOPIC_*`",
        ),
        Remedy(
            "replay: the dead-letter or the raw topic does not exist; `churn-model compare`: a prediction topic",
            "the line names the topic",
            "run the consumer first (it creates its output topics)",
        ),
    ),
    EXIT_AUTH: (
        Remedy(
            "wrong user, password or SASL mechanism",
            "`.venv/bin/python config.py`, and the line: it names the user and the mechanism",
            f"fix the credentials; each line and its fix: {SECURE}",
        ),
        Remedy(
            "a missing ACL (`is not authorized to ...`), or replay run as the pipeline's user",
            '`make kafka-tool ARGS="kafka-acls --list --principal User:NAME"` (as an administrator)',
            "ask for the rights in [the ACL tables](../KAFKA_README.md#connecting-to-a-secure-cluster)",
        ),
    ),
    EXIT_TLS: (
        Remedy(
            "the broker's certificate is not signed by the CA in `KAFKA_SSL_CAFILE` (empty: the system's CAs), or "
            "does not name the host connected to",
            "`openssl s_client -connect HOST:PORT -CAfile CA.pem </dev/null` shows the chain and the names",
            f"set `KAFKA_SSL_CAFILE` to the CA that signed it; connect by a name the certificate holds ({SECURE})",
        ),
        Remedy(
            "the CA file, or the client certificate and key, cannot be used",
            "the line names the file",
            "a PEM file; the certificate and key of one pair",
        ),
    ),
    EXIT_CHECKPOINT: (
        Remedy(
            "an unfinished batch load to this topic exists",
            "`cat .checkpoints/TOPIC.json` (`CHECKPOINT_DIR`)",
            "`producer.py --mode batch --resume` to finish it, or `--restart` to start over",
        ),
        Remedy(
            "another batch producer is loading with the same checkpoint",
            "`ps -ef | grep producer.py`",
            "wait for it, or stop it",
        ),
        Remedy(
            "the checkpoint file is unreadable or damaged",
            "the line names it",
            "`--restart` starts over (rows already sent are sent again, with new event ids)",
        ),
    ),
    EXIT_BROKER_TOOLING: (
        Remedy(
            "port 29092 (or 29093) is taken by another process: another project's broker, a Kafka in Docker",
            "`ss -ltnp 'sport = :29092'`",
            "stop that process, or use that broker and skip `make kafka-up`; or move this project's broker: "
            "`.venv/bin/python -m churnstream.broker up --port 39092 --controller-port 39093` (later `make kafka-*` "
            "keep those ports) and `KAFKA_BOOTSTRAP_SERVERS=localhost:39092` in `.env`",
        ),
        Remedy(
            "Java older than 17 or missing; Maven missing, or no network to Maven Central, on the first run",
            "`java -version`, `mvn -v`",
            "install them ([prerequisites](install.md))",
        ),
        Remedy(
            "the broker's home was formatted with other settings (`BROKERS=3`, `SECURE=1`)",
            "the line says what the home holds and what was asked",
            "the same settings again, or `make kafka-reset` (wipes the data)",
        ),
        Remedy(
            "the broker exited during start-up",
            "the last lines of its log, in the line; `broker/run/node-1/logs/server.log`",
            "what the log says (often a full disk or a port)",
        ),
        Remedy(
            "Prometheus could not be installed (`make monitor`)",
            "the line says how to install it",
            "install `prometheus` from your distribution",
        ),
    ),
    EXIT_PROTOCOL: (
        Remedy(
            "`KAFKA_SECURITY_PROTOCOL` does not match the listener at that port (PLAINTEXT to a TLS port, SASL to "
            "a port without SASL)",
            "`.venv/bin/python config.py`, and the cluster's list of listeners",
            f"the protocol of that port, or the port of that protocol ({SECURE})",
        ),
    ),
    EXIT_MODEL_BROKEN: (
        Remedy(
            "the running model fails on a whole batch and on its own canary rows: its environment changed under "
            "the process (a library upgraded or removed, files replaced)",
            "`.venv/bin/churn-model promote VERSION` loads and checks that version in a fresh process",
            "fix the environment and restart the consumer; or roll back (`churn-model rollback`). The batch's "
            "events wait on the raw topic",
        ),
    ),
    EXIT_USAGE: (
        Remedy(
            "a flag mistyped, missing its value, or two flags that contradict each other",
            "the `Error:` line, and `--help`",
            "every flag: [the CLI reference](reference/cli.md)",
        ),
    ),
    EXIT_INTERRUPTED: (
        Remedy(
            "a second Ctrl-C before the clean stop finished, or one before work began (while the consumer waited "
            "for its topic, for example)",
            "`Interrupted; no summary.` on stderr",
            "nothing to fix: a consumer processes the uncommitted batch again when it restarts",
        ),
    ),
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def troubleshooting_page() -> str:
    classes = error_classes()
    missing = sorted(set(EXIT_CODES) - set(REMEDIES))
    if missing:
        raise ValueError(f"exit code(s) {missing} have no section in churnstream/cli/troubleshooting.py")
    lines = [
        "# Troubleshooting, by exit code",
        "",
        "<!-- Generated by `make docs` from churnstream/errors.py (the codes and their meanings) and "
        "churnstream/cli/troubleshooting.py (the causes). Do not edit: change those and regenerate. -->",
        "",
        "Every command ends an expected failure with one `Error: ...` line on stderr and one of these exit "
        "codes; `echo $?` shows the code of the last command (run through `make`, the code is in make's last "
        "line, `make: *** [...] Error 11`, and make itself exits 2). Each section lists the likely causes, the "
        "command that tells them apart, and the fix. Commands run from a checkout (`.venv/bin/...`); the words "
        "are in the [glossary](glossary.md).",
        "",
        "| Code | Meaning |",
        "| --: | --- |",
    ]
    lines += [f"| [{code}](#exit-{code}) | {_cell(meaning)} |" for code, meaning in sorted(EXIT_CODES.items())]
    for code, meaning in sorted(EXIT_CODES.items()):
        raised = ", ".join(f"`{name}`" for name in classes.get(code, []))
        lines += [
            "",
            f"## Exit {code}",
            "",
            meaning[0].upper() + meaning[1:] + "." + (f" Raised as {raised}." if raised else ""),
        ]
        lines += ["", "| Likely cause | How to tell | Fix |", "| --- | --- | --- |"]
        lines += [f"| {_cell(r.cause)} | {_cell(r.check)} | {_cell(r.fix)} |" for r in REMEDIES[code]]
    return "\n".join(lines) + "\n"
