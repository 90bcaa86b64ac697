"""The metrics port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for a supervisor.

A small threading HTTP server on a daemon thread, bound before the consumer joins its group, so a
port that is taken fails the start in one line (exit 3) before any event is consumed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from churnstream.errors import ConfigError
from churnstream.observability.health import HEALTH_PATH, METRICS_PATH, READY_PATH, Health
from churnstream.settings import ENV_METRICS_PORT

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
BIND_ADDRESS = ""  # every interface: a pod's probes and Prometheus come from outside
# The ports monitoring/prometheus.yml scrapes and deploy/ uses (the code has no default: metrics are
# off unless a port is given).
CONSUMER_METRICS_PORT = 9400
PRODUCER_METRICS_PORT = 9401


class MetricsServer:
    def __init__(self, port: int, registry: CollectorRegistry, health: Health | None = None) -> None:
        self.registry = registry
        self.health = health
        handler = _handler(self)
        try:
            self._server = _QuietServer((BIND_ADDRESS, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"{ENV_METRICS_PORT}/--metrics-port {port} cannot be used ({exc.strerror or exc}); choose a free port"
            ) from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        if self.health is None:
            logger.info("metrics on :%d%s", self.port, METRICS_PATH)
        else:
            logger.info("metrics on :%d%s, health on %s and %s", self.port, METRICS_PATH, HEALTH_PATH, READY_PATH)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """A client gone before its answer (a probe's timeout) is a debug line, not a traceback on stderr."""

    def handle_error(self, request: object, client_address: object) -> None:
        logger.debug("metrics request from %s failed", client_address, exc_info=True)


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # an idle connection does not hold a thread forever

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == METRICS_PATH:
                self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
            elif path in (HEALTH_PATH, READY_PATH) and server.health is not None:
                health = server.health
                check: Callable[[], tuple[bool, str]] = health.live if path == HEALTH_PATH else health.ready
                ok, reason = check()
                self._send(200 if ok else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("metrics request: " + format, *args)

    return Handler
