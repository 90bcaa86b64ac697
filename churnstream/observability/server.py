"""The metrics port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for a supervisor.

A small HTTP server on a daemon thread, bound before the consumer joins its group, so a port that
is taken (or an address that is not this host's) fails the start in one line (exit 3) before any
event is consumed. It listens on every interface unless told otherwise (``--metrics-address``,
METRICS_ADDRESS), as Prometheus exporters do. Each request gets a thread, but never more than
:data:`MAX_CONCURRENT_REQUESTS` at once: past that a connection is closed at once, so a flood of
connections cannot make threads without end. A request must arrive whole within
:data:`REQUEST_TIMEOUT_S` of its connection, however slowly it trickles in, so a few slow clients
cannot hold every slot and starve the health probes.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from churnstream.errors import ConfigError
from churnstream.observability.health import HEALTH_PATH, METRICS_PATH, READY_PATH, Health
from churnstream.settings import ENV_METRICS_ADDRESS, ENV_METRICS_PORT, EVERY_INTERFACE

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0  # for the whole request, from the connection (not per read)
# Prometheus (one or two), the kubelet's two probes and a person with curl need a few at a time.
MAX_CONCURRENT_REQUESTS = 8
# The ports monitoring/prometheus.yml scrapes and deploy/ uses (the code has no default: metrics are
# off unless a port is given).
CONSUMER_METRICS_PORT = 9400
PRODUCER_METRICS_PORT = 9401


class MetricsServer:
    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        health: Health | None = None,
        address: str = EVERY_INTERFACE,
    ) -> None:
        self.registry = registry
        self.health = health
        handler = _handler(self)
        try:
            self._server = _BoundedServer((address, port), handler)
        except OSError as exc:
            where = f"{ENV_METRICS_PORT}/--metrics-port {port}"
            if address != EVERY_INTERFACE:
                where += f" on {ENV_METRICS_ADDRESS}/--metrics-address {address}"
            hint = "choose a free port" + (", and an address of this host" if address != EVERY_INTERFACE else "")
            raise ConfigError(f"{where} cannot be used ({exc.strerror or exc}); {hint}") from None
        self.port = self._server.server_address[1]
        self.address = address
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True)

    @property
    def url(self) -> str:
        """Where it answers, e.g. ``http://127.0.0.1:9400`` (``*`` for every interface)."""
        host = self.address or "*"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        if self.health is None:
            logger.info("metrics on %s%s", self.url, METRICS_PATH)
        else:
            logger.info("metrics on %s%s, health on %s and %s", self.url, METRICS_PATH, HEALTH_PATH, READY_PATH)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _family(address: str) -> socket.AddressFamily:
    """IPv6 for an IPv6 address (or a name that resolves to one first), else IPv4."""
    if address == EVERY_INTERFACE:
        return socket.AF_INET
    try:
        return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:  # a host name
        found = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
        return socket.AddressFamily(found[0][0]) if found else socket.AF_INET


class _BoundedServer(HTTPServer):
    """As ThreadingHTTPServer, a thread per request, but at most MAX_CONCURRENT_REQUESTS at once."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = _family(address[0])
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: it asks DNS for the host's full name
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: object) -> None:
        if not self._slots.acquire(blocking=False):
            logger.debug(
                "metrics connection from %s closed: %d requests in progress", client_address, MAX_CONCURRENT_REQUESTS
            )
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name="metrics-request", daemon=True
        )
        thread.start()

    def _serve(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a client gone mid-answer: handle_error says it at debug
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client gone before its answer (a probe's timeout) is a debug line, not a traceback on stderr."""
        logger.debug("metrics request from %s failed", client_address, exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, each given only what is left of one deadline: a byte every few seconds
    (a per-read timeout would wait for each) cannot keep a request open past it."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self._connection, self._deadline = connection, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(left)
        return self._connection.recv_into(buffer)


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            self.timeout = REQUEST_TIMEOUT_S  # read when the connection comes (tests lower it)
            super().setup()
            self.rfile.close()  # the plain reader setup() made: the connection is read only through the deadline's
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, time.monotonic() + REQUEST_TIMEOUT_S))

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
