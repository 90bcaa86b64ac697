"""The SASL_SSL listener (``up --secure``) on a real broker that demands it.

One private secure broker for the whole module (a start costs ~20 s). On it: the pipeline as the
least-privileged user ``churn``; each failure mode as exactly one ``Error:`` line, its exit code,
within 10 s; a user without ACLs refused; and the password in none of the outputs. Every script
run here goes through :func:`run_secure`, which fails the test if a known password shows in its
stdout or stderr.
"""

from __future__ import annotations

import secrets
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from churnstream import localkafka as broker
from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import dead_letter_headers, decode_prediction
from churnstream.errors import EXIT_AUTH, EXIT_CONFIG, EXIT_PROTOCOL, EXIT_TLS
from churnstream.kafka.clients import make_producer
from churnstream.localkafka.acl import grant
from churnstream.localkafka.secure import PIPELINE_USER, REPLAY_USER, UNPRIVILEGED_USER, SecureMaterial, ensure_material
from churnstream.settings import DEFAULT_DATA_PATH, Settings, settings_from
from tests.helpers import (
    current_model_path,
    free_port,
    http_get,
    read_all_records,
    run_module,
    run_script,
    scrape,
    start_local_cluster,
    start_script,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # the first test also starts the broker

FAILURE_BOUND_S = 10.0  # the "within 10 s", Python start-up and model load included
READER_USER = "reader"  # made by this module: may read the prediction topics, nothing else


@dataclass(frozen=True)
class SecureCluster:
    layout: broker.Layout
    material: SecureMaterial
    reader_password: str
    other_ca: Path  # a CA from another throwaway run: it did not sign this broker's certificate

    @property
    def passwords(self) -> list[str]:
        return [*self.material.users.values(), self.reader_password]

    def env(self, user: str = PIPELINE_USER, password: str | None = None, **overrides: str) -> dict[str, str]:
        """Client variables for the SASL_SSL listener, as a user would set them."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.layout.secure_bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": password if password is not None else self.material.users[user],
            "KAFKA_SSL_CAFILE": str(self.material.ca_pem),
            "MODEL_PATH": str(current_model_path()),
            "DATA_PATH": str(DEFAULT_DATA_PATH),
            **overrides,
        }

    def super_admin(self) -> KafkaAdminClient:
        """The launcher's view: the plaintext listener, where clients are the super user ANONYMOUS."""
        return KafkaAdminClient(bootstrap_servers=self.layout.bootstrap_servers.split(","), bootstrap_timeout_ms=5000)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    home = tmp_path_factory.mktemp("secure-kafka")
    try:
        layout = start_local_cluster(home, secure=True)
    except BaseException:
        if (started := broker.load_layout(home)) is not None:  # a node may run although up() failed
            broker.down(started)
        raise
    try:
        # reads what up() generated
        material = ensure_material(home, layout.secure_bootstrap_servers, layout.mtls_bootstrap_servers)
        other_ca = ensure_material(tmp_path_factory.mktemp("other-ca"), "localhost:1").ca_pem
        reader_password = secrets.token_urlsafe(18)
        admin = KafkaAdminClient(bootstrap_servers=layout.bootstrap_servers.split(","), bootstrap_timeout_ms=5000)
        try:
            created = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(READER_USER, ScramMechanism.SCRAM_SHA_512, reader_password)]
            )
            assert created == {READER_USER: None}
        finally:
            admin.close()
        yield SecureCluster(layout, material, reader_password, other_ca)
    finally:
        broker.down(layout)


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]


def run_secure(secure: SecureCluster, script: str, args: list[str], env: dict[str, str], timeout: float = 180) -> Run:
    """A script as a subprocess, timed; no traceback, and no known password in what it printed."""
    runner = run_module if script.startswith("churnstream.") else run_script
    start = time.monotonic()
    result: subprocess.CompletedProcess[str] = runner(script, args, env, timeout=timeout)
    run = Run(result.returncode, result.stdout, result.stderr, time.monotonic() - start)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for password in (*secure.passwords, env.get("KAFKA_SASL_PASSWORD", "")):
        if password:
            assert password not in run.stdout + run.stderr, f"{script} {args} printed a password"
    return run


def assert_no_password_in_files(secure: SecureCluster, folder: Path) -> int:
    files = [path for path in folder.rglob("*") if path.is_file()]
    for path in files:
        content = path.read_bytes()
        for password in secure.passwords:
            assert password.encode() not in content, f"{path} holds a password"
    return len(files)


@pytest.fixture
def granted(secure: SecureCluster, unique: Callable[[str], str], tmp_path: Path) -> dict[str, str]:
    """This test's own topics and group, provisioned the way an administrator would for ``churn``:
    topics created over the plaintext listener, least-privilege ACLs (acl.pipeline_acls) granted."""
    names = {
        "KAFKA_TOPIC_RAW": unique("raw"),
        "KAFKA_TOPIC_PREDICTIONS": unique("pred"),
        "KAFKA_TOPIC_DEADLETTER": unique("dlq"),
        "KAFKA_CONSUMER_GROUP": unique("group"),
    }
    broker.provision_pipeline(secure.layout, settings_from(names), PIPELINE_USER)
    return {**names, "CHECKPOINT_DIR": str(tmp_path / "checkpoints")}


def allow_reader(secure: SecureCluster, topic: str) -> None:
    pattern = ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    admin = secure.super_admin()
    try:
        grant(
            admin,
            [
                ACL(f"User:{READER_USER}", "*", operation, ACLPermissionType.ALLOW, pattern)
                for operation in (ACLOperation.READ, ACLOperation.DESCRIBE)
            ],
        )
    finally:
        admin.close()


# --- the happy path -----------------------------------------------------------------------------


def test_the_pipeline_runs_over_sasl_ssl_with_least_privilege(
    secure: SecureCluster, granted: dict[str, str], tmp_path: Path
) -> None:
    env = secure.env(**granted)
    produced = run_secure(
        secure,
        "producer.py",
        ["--mode", "batch", "--limit", "300", "--no-progress", "--summary-json", str(tmp_path / "producer.json")],
        env,
    )
    assert produced.returncode == 0, produced.stderr
    assert orjson.loads((tmp_path / "producer.json").read_bytes())["acknowledged"] == 300

    consumed = run_secure(
        secure, "consumer.py", ["--mode", "batch", "--summary-json", str(tmp_path / "consumer.json")], env
    )
    assert consumed.returncode == 0, consumed.stderr
    summary = orjson.loads((tmp_path / "consumer.json").read_bytes())
    assert (summary["scored"], summary["dead_lettered"]) == (300, 0)

    # Read the outputs over SASL_SSL too, as a downstream user who may read them and nothing else.
    allow_reader(secure, granted["KAFKA_TOPIC_PREDICTIONS"])
    reader = settings_from(secure.env(READER_USER, secure.reader_password, **granted))
    predictions = [decode_prediction(r.value) for r in read_all_records(reader, granted["KAFKA_TOPIC_PREDICTIONS"])]
    assert len(predictions) == 300
    assert all(0.0 <= p.churn_probability <= 1.0 for p in predictions)
    assert assert_no_password_in_files(secure, tmp_path) >= 2


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
def test_the_pipeline_runs_with_only_bootstrap_server_and_command_config(
    secure: SecureCluster, granted: dict[str, str], tmp_path: Path, listener: str
) -> None:
    """A managed cluster's way: no KAFKA_* security variables, only the admin's properties file.
    Mutual TLS: the client certificate's CN is the user, with the same least rights."""
    material = secure.material
    bootstrap, properties = {
        "sasl_ssl": (secure.layout.secure_bootstrap_servers, material.client_properties),
        "mtls": (secure.layout.mtls_bootstrap_servers, material.mtls_properties),
    }[listener]
    env = {**granted, "MODEL_PATH": str(current_model_path()), "DATA_PATH": str(DEFAULT_DATA_PATH)}
    connection = ["--bootstrap-server", bootstrap, "--command-config", str(properties)]
    produced = run_secure(
        secure, "producer.py", ["--mode", "batch", "--limit", "200", "--no-progress", *connection], env
    )
    assert produced.returncode == 0, produced.stderr
    consumed = run_secure(
        secure, "consumer.py", ["--mode", "batch", "--summary-json", str(tmp_path / "c.json"), *connection], env
    )
    assert consumed.returncode == 0, consumed.stderr
    summary = orjson.loads((tmp_path / "c.json").read_bytes())
    assert (summary["scored"], summary["dead_lettered"]) == (200, 0)

    # Kafka's own tools, with the same settings, as the same user: the group committed 200 offsets.
    described = run_secure(
        secure,
        "churnstream.broker",
        ["--home", str(secure.layout.home), "tool", *connection, "kafka-consumer-groups", "--describe", "--group",
         granted["KAFKA_CONSUMER_GROUP"]],
        {},
    )  # fmt: skip
    assert described.returncode == 0, described.stderr[-2000:]
    rows = [line.split() for line in described.stdout.splitlines() if granted["KAFKA_TOPIC_RAW"] in line]
    assert sum(int(row[3]) for row in rows) == 200  # CURRENT-OFFSET, summed over the partitions


def test_the_metrics_port_shows_no_secret(secure: SecureCluster, granted: dict[str, str], tmp_path: Path) -> None:
    chosen = secrets.token_urlsafe(18)
    admin = secure.super_admin()
    try:
        admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(PIPELINE_USER, ScramMechanism.SCRAM_SHA_512, chosen)]
        )
    finally:
        admin.close()
    port = free_port()
    env = secure.env(PIPELINE_USER, chosen, **granted)
    consumer = start_script(
        "consumer.py", ["--metrics-port", str(port), "--duration", "60"], env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "the consumer to be ready")
        for path in ("/metrics", "/healthz", "/readyz", "/nothing"):
            status, body = http_get(f"http://127.0.0.1:{port}{path}")
            assert status in (200, 404)
            assert chosen not in body and secure.material.users[PIPELINE_USER] not in body, path
        assert scrape(port)["churn_assigned_partitions"] > 0
    finally:
        consumer.terminate()
        out, err = consumer.communicate(timeout=60)
        admin = secure.super_admin()
        try:  # the fixture's password again, for the tests after this one
            admin.alter_user_scram_credentials(
                [
                    UserScramCredentialUpsertion(
                        PIPELINE_USER, ScramMechanism.SCRAM_SHA_512, secure.material.users[PIPELINE_USER]
                    )
                ]
            )
        finally:
            admin.close()
    assert consumer.returncode == 0, err[-2000:]
    assert chosen not in out + err


def test_replay_runs_as_its_own_user_and_the_pipeline_user_cannot_replay(
    secure: SecureCluster, granted: dict[str, str], tmp_path: Path
) -> None:
    """Before: replay had no rights under the documented ACLs (the pipeline user may only write the
    dead-letter topic). Now it runs as ``churn-replay``, with acl.replay_acls and nothing more."""
    settings = settings_from(granted)
    write_dead_letters(secure, settings, 3)
    refused = run_secure(secure, "churnstream.replay", ["-q"], secure.env(**granted))
    assert refused.returncode == EXIT_AUTH and len(refused.error_lines) == 1, refused.stderr
    assert "not authorized" in refused.error_lines[0]
    replayed = run_secure(secure, "churnstream.replay", [], secure.env(REPLAY_USER, **granted))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "3 dead letters, 3 matching, 0 already replayed, replayed 3"
    again = run_secure(secure, "churnstream.replay", [], secure.env(REPLAY_USER, **granted))
    assert again.stdout.strip() == "3 dead letters, 3 matching, 3 already replayed, replayed 0"


def write_dead_letters(secure: SecureCluster, settings: Settings, count: int) -> None:
    """Dead letters as the consumer writes them, put there by the super user (plaintext listener)."""
    admin_settings = settings_from({"KAFKA_BOOTSTRAP_SERVERS": secure.layout.bootstrap_servers})
    producer = make_producer(admin_settings)
    try:
        for offset in range(count):
            headers = dead_letter_headers(
                stage="validate", reason="Contract='Forever' is not a known category", error_class="E",
                source_topic=settings.topic_raw, source_partition=0, source_offset=offset, failed_ts=utc_now_iso(),
                model_version="m",
            )  # fmt: skip
            producer.send(
                settings.topic_deadletter, key=b"k%d" % offset, value=b'{"Contract": "Forever"}', headers=headers
            )
        producer.flush(timeout=30)
    finally:
        producer.close()


@pytest.mark.slow
def test_test_pipeline_py_runs_on_its_prefixed_grants(secure: SecureCluster, tmp_path: Path) -> None:
    """Default topic names: the launcher granted ``churn`` rights on ``<topic>-run-*`` only."""
    out = tmp_path / "results"
    args = ["--mode", "batch", "--limit", "200", "--timeout", "60"]
    args += ["--results-json", str(out / "latest.json"), "--report", str(out / "TEST_RESULTS.md")]
    run = run_secure(secure, "test_pipeline.py", args, secure.env(CHECKPOINT_DIR=str(tmp_path / "checkpoints")))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "PASSED" in run.stdout
    results = orjson.loads((out / "latest.json").read_bytes())
    assert results["passed"] and results["scored"] == 200 and results["lost"] == 0
    assert (out / "TEST_RESULTS.md").is_file()
    # results JSON, report, plot, and each subprocess's log and summary
    assert assert_no_password_in_files(secure, out) >= 5


# --- failure modes: one line, a distinct exit code, within 10 s ------------------------------------


def failed_authentications(secure: SecureCluster) -> int:
    """How many connections the broker refused for bad credentials so far (its own log)."""
    text = secure.layout.log_file(0).read_text(errors="replace")
    return text.count("Failed authentication with")


SCRIPT_ARGS = {
    "producer.py": ["--mode", "batch", "--limit", "10", "--no-progress"],
    "consumer.py": ["--mode", "batch"],
}
BOTH = ("producer.py", pytest.param("consumer.py", marks=pytest.mark.slow))


@pytest.mark.parametrize("user", ["churn", "ghost"], ids=["wrong-password", "unknown-user"])
@pytest.mark.parametrize("script", BOTH)
def test_bad_credentials_are_exit_8_without_a_retry_storm(
    secure: SecureCluster, granted: dict[str, str], script: str, user: str
) -> None:
    """Wrong password and unknown user look the same: the broker does not reveal which users exist."""
    before = failed_authentications(secure)
    password = "not-the-password" if user == "churn" else secure.material.users[PIPELINE_USER]
    env = secure.env(PIPELINE_USER, password, **granted, KAFKA_SASL_USERNAME=user)
    run = run_secure(secure, script, SCRIPT_ARGS[script], env)
    assert run.returncode == EXIT_AUTH, run.stderr
    assert run.error_lines == [
        f"Error: the broker at {secure.layout.secure_bootstrap_servers} rejected user {user!r} (SCRAM-SHA-512): "
        "invalid credentials (a wrong password or an unknown user); check KAFKA_SASL_USERNAME and "
        "KAFKA_SASL_PASSWORD"
    ]
    assert run.seconds < FAILURE_BOUND_S
    # kafka-python's backoff over the 6 s bootstrap window: a handful of attempts, not hundreds
    attempts = failed_authentications(secure) - before
    print(f"\nFIGURES refused-credentials script={script} user={user} attempts={attempts} seconds={run.seconds:.1f}")
    assert 1 <= attempts <= 12, attempts


@pytest.mark.slow
def test_a_mechanism_the_listener_does_not_enable_is_exit_8(secure: SecureCluster, granted: dict[str, str]) -> None:
    env = secure.env(**granted, KAFKA_SASL_MECHANISM="SCRAM-SHA-256")
    run = run_secure(secure, "producer.py", SCRIPT_ARGS["producer.py"], env)
    assert run.returncode == EXIT_AUTH, run.stderr
    assert run.error_lines == [
        f"Error: the broker at {secure.layout.secure_bootstrap_servers} does not accept SASL mechanism "
        "SCRAM-SHA-256; set KAFKA_SASL_MECHANISM to one the cluster enables"
    ]
    assert run.seconds < FAILURE_BOUND_S


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_a_missing_ca_file_is_exit_3_at_once(
    secure: SecureCluster, granted: dict[str, str], script: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    run = run_secure(secure, script, SCRIPT_ARGS[script], secure.env(**granted, KAFKA_SSL_CAFILE=str(missing)))
    assert run.returncode == EXIT_CONFIG, run.stderr
    assert run.error_lines == [f"Error: KAFKA_SSL_CAFILE={str(missing)!r} is not valid: the CA file does not exist"]
    # no connection is attempted; the consumer reports it once its model is loaded (2-4 s)
    assert run.seconds < (3 if script == "producer.py" else FAILURE_BOUND_S)


def test_a_ca_file_without_a_certificate_is_exit_9_at_once(
    secure: SecureCluster, granted: dict[str, str], tmp_path: Path
) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("this is not a certificate\n")
    env = secure.env(**granted, KAFKA_SSL_CAFILE=str(junk))
    run = run_secure(secure, "producer.py", SCRIPT_ARGS["producer.py"], env)
    assert run.returncode == EXIT_TLS, run.stderr
    assert run.error_lines == [
        f"Error: KAFKA_SSL_CAFILE={str(junk)!r} is not usable: it holds no PEM CA certificate "
        "(NO_CERTIFICATE_OR_CRL_FOUND)"
    ]
    assert run.seconds < 3


@pytest.mark.parametrize(
    ("script", "cafile"),
    [
        ("producer.py", "other-ca"),
        pytest.param("consumer.py", "other-ca", marks=pytest.mark.slow),
        pytest.param("producer.py", "system-trust", marks=pytest.mark.slow),
    ],
)
def test_an_untrusted_certificate_is_exit_9(
    secure: SecureCluster, granted: dict[str, str], script: str, cafile: str
) -> None:
    ca = str(secure.other_ca) if cafile == "other-ca" else ""  # empty: the system's trusted CAs
    run = run_secure(secure, script, SCRIPT_ARGS[script], secure.env(**granted, KAFKA_SSL_CAFILE=ca))
    assert run.returncode == EXIT_TLS, run.stderr
    [line] = run.error_lines
    assert line.startswith(f"Error: the TLS certificate of {secure.layout.secure_bootstrap_servers} is not trusted (")
    assert line.endswith("); set KAFKA_SSL_CAFILE to the CA that signed it")
    assert run.seconds < FAILURE_BOUND_S


@pytest.mark.parametrize("script", BOTH)
def test_plaintext_against_the_tls_listener_is_exit_12(
    secure: SecureCluster, granted: dict[str, str], script: str
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": secure.layout.secure_bootstrap_servers, **granted}  # no security settings
    env |= {"MODEL_PATH": str(current_model_path()), "DATA_PATH": str(DEFAULT_DATA_PATH)}
    run = run_secure(secure, script, SCRIPT_ARGS[script], env)
    assert run.returncode == EXIT_PROTOCOL, run.stderr
    assert run.error_lines == [
        f"Error: the broker at {secure.layout.secure_bootstrap_servers} accepted the connection but closed it "
        "without a Kafka answer: it expects another security protocol than KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
        "(a TLS listener needs SSL or SASL_SSL)"
    ]
    assert run.seconds < FAILURE_BOUND_S


@pytest.mark.slow
def test_sasl_ssl_against_the_plaintext_listener_is_exit_9(secure: SecureCluster, granted: dict[str, str]) -> None:
    plaintext = secure.layout.bootstrap_servers
    env = secure.env(**granted, KAFKA_BOOTSTRAP_SERVERS=plaintext)
    run = run_secure(secure, "producer.py", SCRIPT_ARGS["producer.py"], env)
    assert run.returncode == EXIT_TLS, run.stderr
    assert run.error_lines == [
        f"Error: the TLS handshake with {plaintext} failed; is it a TLS listener? (KAFKA_SECURITY_PROTOCOL=SASL_SSL)"
    ]
    assert run.seconds < FAILURE_BOUND_S


# --- authorization --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["producer.py", "consumer.py"])
def test_a_user_without_acls_is_refused(secure: SecureCluster, granted: dict[str, str], script: str) -> None:
    """``intruder`` authenticates fine, but may not even see the topics (they exist: ``churn`` has them)."""
    run = run_secure(secure, script, SCRIPT_ARGS[script], secure.env(UNPRIVILEGED_USER, **granted))
    assert run.returncode == EXIT_AUTH, run.stderr
    assert run.error_lines == [
        f"Error: user 'intruder' is not authorized to access topic(s) {granted['KAFKA_TOPIC_RAW']} on "
        f"{secure.layout.secure_bootstrap_servers} (TopicAuthorizationFailed); the cluster's administrator must "
        "grant it ACLs (KAFKA_README.md, 'Connecting to a secure cluster', lists the ones the pipeline needs)"
    ]
    assert run.seconds < FAILURE_BOUND_S


def test_least_privilege_stops_at_the_granted_names(secure: SecureCluster, granted: dict[str, str]) -> None:
    """``churn`` may use its own group (and the transactional ids named after it), no other."""
    other = "not-granted-" + granted["KAFKA_CONSUMER_GROUP"]  # prefixed grants match the start of a name
    run = run_secure(
        secure, "consumer.py", SCRIPT_ARGS["consumer.py"], secure.env(**(granted | {"KAFKA_CONSUMER_GROUP": other}))
    )
    assert run.returncode == EXIT_AUTH, run.stderr
    [line] = run.error_lines
    assert line.startswith(f"Error: user 'churn' is not authorized to use transactional ids starting with {other} ")
    assert run.seconds < FAILURE_BOUND_S

    producer = run_secure(
        secure, "producer.py", SCRIPT_ARGS["producer.py"], secure.env(**(granted | {"KAFKA_TOPIC_RAW": other}))
    )
    assert producer.returncode == EXIT_AUTH, producer.stderr
    [line] = producer.error_lines
    assert line.startswith(f"Error: user 'churn' is not authorized to access topic(s) {other} ")


# --- secrets --------------------------------------------------------------------------------------


def test_no_password_in_help_settings_or_debug_logs(secure: SecureCluster, granted: dict[str, str]) -> None:
    chosen = "s3cr3t 'quoted' \"pw\" \\ ünïcode,=%s"  # printf, quote and escape characters on purpose
    env = secure.env(PIPELINE_USER, chosen, **granted)
    for script in ("producer.py", "consumer.py", "test_pipeline.py", "config.py", "churnstream.broker"):
        shown = run_secure(secure, script, ["--help"], env)
        assert shown.returncode == 0 and "usage:" in shown.stdout, script

    settings = run_secure(secure, "config.py", [], env)
    assert settings.returncode == 0, settings.stderr
    assert "KAFKA_SASL_PASSWORD=***" in settings.stdout.splitlines()
    assert "KAFKA_SASL_USERNAME=churn" in settings.stdout.splitlines()
    loaded = settings_from(env)
    for text in (repr(loaded), str(loaded), str(loaded.describe()), repr(loaded.sasl_password)):
        assert chosen not in text

    # kafka-python logs its whole configuration at DEBUG, password included: -vvv turns that on.
    debug = run_secure(secure, "producer.py", [*SCRIPT_ARGS["producer.py"], "-vvv"], secure.env(**granted))
    assert debug.returncode == 0, debug.stderr[-2000:]
    assert "'sasl_plain_password': '***'" in debug.stderr  # the line is there, masked


def test_the_launcher_keeps_its_secrets_private(secure: SecureCluster) -> None:
    folder = secure.material.folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("secrets.json", "client.env", "replay.env", "client.properties", "mtls.env", "mtls.properties",
                 "client.key", "client-keystore.pem"):  # fmt: skip
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(secure.layout.properties_file(0).stat().st_mode) == 0o600  # keystore password
    assert not (folder / "ca.p12").exists()  # the CA's private key is gone once it has signed
    client_env = (folder / "client.env").read_text()
    assert f"KAFKA_BOOTSTRAP_SERVERS={secure.layout.secure_bootstrap_servers}\n" in client_env
    assert f"KAFKA_SSL_CAFILE={secure.material.ca_pem}\n" in client_env
    # the broker's own log shows its configuration with secrets hidden
    log = secure.layout.log_file(0).read_text(errors="replace")
    for secret in (secure.material.store_password, *secure.material.users.values()):
        assert secret not in log
