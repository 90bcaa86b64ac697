"""Say once that the broker is gone and once that it is back, instead of once per retry.

kafka-python reconnects by itself, with backoff, and logs every failed attempt (several lines a
second per client during an outage); our scripts keep its logger quiet (``cli.common.setup_logging``).
:func:`watch_broker` attaches an :class:`OutageMonitor` to the ``kafka`` logger while a loop runs:
it reads the client's connection failures without printing them, logs ONE warning on our logger
when the broker is first lost, and ONE info line when the loop reports progress again (producer:
an acknowledgement; consumer: a committed batch). Nothing here retries: the client does.

Only *failed connection attempts* count as an outage. A connection the broker closes (an idle
timeout, a leader moving) is reopened by the client at once, and that is not worth a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from churnstream.kafka.clients import RECONNECT_BACKOFF_MAX_MS

logger = logging.getLogger(__name__)


# What kafka-python 3.0.12 logs (at WARNING or ERROR) for one failed attempt to reach a broker:
# refused or timed-out connections, and requests a hung broker never answers. Lines such as "No node
# available for metadata refresh" are left out on purpose: a client still waiting out its backoff
# logs them after the broker is back, which would announce a second outage that is not there.
FAILURE_MARKERS = ("Connection failed:", "Bootstrap connection to", "Request timed out")


def is_connection_failure(message: str) -> bool:
    return any(marker in message for marker in FAILURE_MARKERS)


class OutageMonitor(logging.Handler):
    """A handler on the ``kafka`` logger that turns a storm of retries into two lines of ours.

    ``emit`` runs on the clients' network threads, ``progress`` on whichever thread saw the client
    do useful work; one lock orders them. ``progress`` is called per acknowledgement, so its
    common case (no outage) is a single attribute read.
    """

    def __init__(self, bootstrap_servers: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.WARNING)
        self.bootstrap_servers = bootstrap_servers
        self._clock = clock
        self._state_lock = threading.Lock()
        self.lost_since: float | None = None
        self.last_failure_at: float | None = None
        self.failed_attempts = 0  # in the current outage
        self.outages = 0
        self.total_failed_attempts = 0
        self.longest_outage_s = 0.0

    @property
    def lost(self) -> bool:
        return self.lost_since is not None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return  # a malformed client record says nothing about the broker
        if not is_connection_failure(message):
            return
        with self._state_lock:
            self.last_failure_at = self._clock()
            self.failed_attempts += 1
            self.total_failed_attempts += 1
            if self.lost_since is not None:
                return
            self.lost_since = self.last_failure_at
            self.outages += 1
        logger.warning(
            "lost connection to the broker at %s (%s); kafka-python keeps retrying with backoff (at most %.0f s "
            "apart), this is logged again only when the broker is back",
            self.bootstrap_servers,
            message.rsplit(": ", 1)[-1][:120],
            RECONNECT_BACKOFF_MAX_MS / 1000,
        )

    def progress(self) -> None:
        """The client did useful work: if the broker was lost, it is back."""
        if self.lost_since is None:
            return
        with self._state_lock:
            if self.lost_since is None:
                return
            outage_s = self._clock() - self.lost_since
            attempts = self.failed_attempts
            self.lost_since = None
            self.failed_attempts = 0
            self.longest_outage_s = max(self.longest_outage_s, outage_s)
        logger.info(
            "broker at %s back after %.1f s (%d failed connection attempts)", self.bootstrap_servers, outage_s, attempts
        )

    def finish(self) -> None:
        """The loop is ending: say so if the broker never came back (nothing is logged otherwise)."""
        with self._state_lock:
            lost_since, last_failure_at, attempts = self.lost_since, self.last_failure_at, self.failed_attempts
        if lost_since is None or last_failure_at is None:
            return
        now = self._clock()
        logger.warning(
            "stopping before any progress since the broker at %s was lost %.1f s ago (%d failed connection "
            "attempts, the last %.1f s ago)",
            self.bootstrap_servers,
            now - lost_since,
            attempts,
            now - last_failure_at,
        )


@contextmanager
def watch_broker(bootstrap_servers: str) -> Iterator[OutageMonitor]:
    """Attach an :class:`OutageMonitor` to kafka-python's logger for the duration of a run loop.

    Enter it once the clients are connected: a broker that is down at start-up is a start-up
    error (one ``Error:`` line, kafka.diagnosis.bootstrap_diagnosed), not an outage. The client's records
    are kept from the console as ``cli.common.setup_logging`` intends, unless ``-vv`` asked for them.
    """
    monitor = OutageMonitor(bootstrap_servers)
    kafka_logger = logging.getLogger("kafka")
    level, propagate = kafka_logger.level, kafka_logger.propagate
    if kafka_logger.getEffectiveLevel() > logging.WARNING:
        kafka_logger.setLevel(logging.WARNING)
        kafka_logger.propagate = False
    kafka_logger.addHandler(monitor)
    try:
        yield monitor
    finally:
        kafka_logger.removeHandler(monitor)
        kafka_logger.setLevel(level)
        kafka_logger.propagate = propagate
        monitor.finish()
