"""What the local broker needs on the machine: Java 17+, and Kafka's jars resolved from Maven Central.

``conf/pom.xml`` names Apache Kafka and its tools; the machine's ``mvn`` copies them into
``broker/libs`` (git-ignored) once, and the launcher runs them with ``java -cp``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
from pathlib import Path

from churnstream.errors import BrokerToolingError
from churnstream.localkafka.layout import BROKER_DIR

logger = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent / "conf"
POM = CONF_DIR / "pom.xml"
SERVER_LOG4J = CONF_DIR / "log4j2.yaml"
TOOLS_LOG4J = CONF_DIR / "tools-log4j2.yaml"
LIBS_DIR = BROKER_DIR / "libs"
KAFKA_VERSION = "4.3.1"
MIN_JAVA = 17


def java_major_version(java: str = "java") -> int:
    if shutil.which(java) is None:
        raise BrokerToolingError(
            f"Java {MIN_JAVA}+ is needed for the local broker, and 'java' is not on PATH; "
            "install it (Debian: apt install openjdk-17-jre-headless)"
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise BrokerToolingError(f"could not read the Java version from 'java -version': {result.stderr.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> None:
    major = java_major_version()
    if major < MIN_JAVA:
        raise BrokerToolingError(
            f"Java {MIN_JAVA}+ is needed for Kafka {KAFKA_VERSION}, found Java {major}; "
            "install OpenJDK 17 (Debian: apt install openjdk-17-jre-headless)"
        )


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def libs_ready(libs: Path = LIBS_DIR) -> bool:
    stamp = libs / ".complete"
    return stamp.is_file() and stamp.read_text().strip() == _pom_digest()


def fetch_libs(libs: Path = LIBS_DIR) -> Path:
    """Resolve Kafka and its tools from Maven Central into ``libs`` (once; kept as a cache)."""
    if libs_ready(libs):
        return libs
    if shutil.which("mvn") is None:
        raise BrokerToolingError(
            "Maven is needed once to download Kafka from Maven Central, and 'mvn' is not on PATH; "
            "install it (Debian: apt install maven)"
        )
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("resolving Apache Kafka %s from Maven Central into %s", KAFKA_VERSION, libs)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
        raise BrokerToolingError(
            "mvn could not resolve Kafka from Maven Central: " + (lines[0] if lines else f"exit {result.returncode}")
        )
    if not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise BrokerToolingError(f"mvn finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {staging}")
    (staging / ".complete").write_text(_pom_digest() + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def java_command(main_class: str, log4j: Path, logs_dir: Path, heap: str | None = None) -> list[str]:
    command = ["java"]
    if heap:
        command += ["-Xms256m", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"]
    command += [
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        str(LIBS_DIR / "*"),
        main_class,
    ]
    return command
