"""Two listeners over one state: HTTPS for everything, plain HTTP for the browser pages."""

from __future__ import annotations

import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from . import pages, testapi
from .adminconsent import admin_consent
from .authorize import authorize
from .dynamics import service_root, table_read, whoami
from .errors import correlation_id_from
from .oauth import discovery, error_info, jwks, logout, token
from .pki import ensure_pki
from .seed import SeedError, load_seed
from .state import EmulatorState
from .tokens import Signer
from .web import Request, Response, html_response, json_response

MAX_BODY = 1024 * 1024
Handler = Callable[[EmulatorState, Request], Response]


def app_certificates(emu: EmulatorState, req: Request) -> Response:
    """The portal's Upload certificate, for a person trying the product with `make run`."""
    app = emu.directory.apps.get(req.route["client_id"].lower())
    if app is None:
        return html_response(404, pages.error_code(0, "not_found", "No such app."))
    message = None
    if req.method == "POST":
        try:
            testapi.upload_certificate(emu, app.client_id, req.params.get("pem", ""))
            app = emu.directory.apps[app.client_id]
        except (testapi.BadRequest, SeedError):
            message = "That is not a PEM certificate: paste the whole .cer file."
    return html_response(200, pages.certificates(app=app, message=message))


def index(emu: EmulatorState, req: Request) -> Response:
    page = pages.index(emu.directory, origin=emu.origin, browser_origin=emu.browser_origin)
    return html_response(200, page)


@dataclass(frozen=True)
class Route:
    endpoint: str
    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    handler: Handler
    browser: bool = False  # also served on the plain-HTTP browser port
    test_api: bool = False


def _route(
    endpoint: str, path: str, methods: tuple[str, ...], handler: Handler, **kw: Any
) -> Route:
    return Route(endpoint, re.compile(f"^{path}$"), methods, handler, **kw)


_TENANT = r"/(?P<tenant>[^/]+)"
ROUTES = (
    _route("discovery", rf"{_TENANT}/v2\.0/\.well-known/openid-configuration", ("GET",), discovery),
    _route("jwks", rf"{_TENANT}/discovery/v2\.0/keys", ("GET",), jwks),
    _route(
        "authorize", rf"{_TENANT}/oauth2/v2\.0/authorize", ("GET", "POST"), authorize, browser=True
    ),
    _route("token", rf"{_TENANT}/oauth2/v2\.0/token", ("POST",), token),
    _route(
        "adminconsent",
        rf"{_TENANT}/v2\.0/adminconsent",
        ("GET", "POST"),
        admin_consent,
        browser=True,
    ),
    _route("logout", rf"{_TENANT}/oauth2/v2\.0/logout", ("GET", "POST"), logout, browser=True),
    _route("whoami", r"/api/data/v9\.2/WhoAmI(?:\(\))?", ("GET",), whoami),
    _route("webapi", r"/api/data/v9\.2/?", ("GET",), service_root),
    _route(
        "tables",
        r"/api/data/v9\.2/(?P<entity_set>leads|contacts|accounts|opportunities|campaigns)",
        ("GET",),
        table_read,
    ),
    _route("index", "/", ("GET",), index, browser=True),
    _route(
        "certificates",
        r"/apps/(?P<client_id>[0-9a-fA-F-]{36})/certificates",
        ("GET", "POST"),
        app_certificates,
        browser=True,
    ),
    _route("error_info", "/error", ("GET",), error_info, browser=True),
    *(
        _route(
            f"test_api_{name}",
            f"/_emulator/{name}",
            (method,),
            testapi.guarded(handler),
            test_api=True,
        )
        for name, method, handler in (
            ("apps", "POST", testapi.apps),
            ("certificates", "POST", testapi.certificates),
            ("seed", "POST", testapi.seed),
            ("faults", "POST", testapi.faults),
            ("config", "POST", testapi.config),
            ("revoke", "POST", testapi.revoke),
            ("reset", "POST", testapi.reset),
            ("log", "GET", testapi.log),
        )
    ),
)


def dispatch(emu: EmulatorState, req: Request) -> Response:
    """Route one request, apply any injected fault, record it and log one line."""
    route, match = _find(req.path)
    if (
        route is None
        or match is None
        or (route.test_api and not emu.test_api)
        or (not req.secure and not route.browser)
    ):
        return _finish(
            emu, req, None, json_response(404, {"error": "not_found"}, outcome="not_found")
        )
    if req.method not in route.methods:
        response = json_response(
            405,
            {"error": "method_not_allowed"},
            outcome="bad_method",
            headers=[("Allow", ", ".join(route.methods))],
        )
        return _finish(emu, req, route, response)
    req.route = match.groupdict()
    req.trace_id = str(uuid.uuid4())
    generation = emu.generation
    req.correlation_id = correlation_id_from(req.headers.get("client-request-id"))

    with emu.lock:
        fault = emu.take_fault(route.endpoint, req.client_id, req.params.get("grant_type"))
    if fault is not None and fault.action == "delay":
        time.sleep(fault.value)
    with emu.lock:
        if emu.generation != generation:  # reset while this request waited: a stale one
            return json_response(503, {"error": "temporarily_unavailable"}, outcome="stale")
        if fault is not None and fault.action == "status":
            response = Response(
                fault.value,
                b"Service unavailable (fault injected by entra-emulator)\n",
                [("Content-Type", "text/plain; charset=utf-8")],
                outcome=f"http_{fault.value}",
            )
        elif fault is not None and fault.action == "body":
            response = Response(
                200,
                fault.value.encode(),
                [("Content-Type", "text/html; charset=utf-8")],
                outcome="fault_body",
            )
        else:  # the endpoint itself applies aadsts and claims faults
            req.fault = fault if fault is not None and fault.action != "delay" else None
            try:
                response = route.handler(emu, req)
            except Exception:  # one broken request must not take the emulator down
                traceback.print_exc(file=sys.stderr)
                response = json_response(500, {"error": "server_error"}, outcome="exception")
        return _finish(emu, req, route, response, fault=fault.action if fault else None)


def _find(path: str) -> tuple[Route | None, re.Match[str] | None]:
    for route in ROUTES:
        match = route.pattern.match(path)
        if match:
            return route, match
    return None, None


def _finish(
    emu: EmulatorState,
    req: Request,
    route: Route | None,
    response: Response,
    *,
    fault: str | None = None,
) -> Response:
    """Log one line to stderr (never a query string, secret, code or token) and keep a record."""
    client_id = _loggable_client_id(req)
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sys.stderr.write(
        f"{now} {req.method} {req.path} {response.status} client_id={client_id or '-'} "
        f"{response.outcome}{f' fault={fault}' if fault else ''}\n"
    )
    if route is not None and not route.test_api:
        with emu.lock:
            emu.log.append(
                {
                    "time": now,
                    "endpoint": route.endpoint,
                    "method": req.method,
                    "tenant": req.route.get("tenant"),
                    "client_id": client_id,
                    "grant_type": req.params.get("grant_type")
                    if route.endpoint == "token"
                    else None,
                    "status": response.status,
                    "outcome": response.outcome,
                    "fault": fault,
                }
            )
    return response


def _loggable_client_id(req: Request) -> str | None:
    """Client ids are GUIDs; anything else is not echoed (it could be a pasted secret)."""
    try:
        return str(uuid.UUID(req.client_id or ""))
    except ValueError:
        return None


# --- Sockets ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "entra-emulator"
    timeout = 30  # idle keep-alive connections end, so shutdown is never held up
    # Buffered, so the status line, headers and body leave in one write (flushed after each
    # request): two small writes would wait ~40 ms for the client's delayed ACK (Nagle).
    wbufsize = 256 * 1024

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in the worker thread, not in accept()

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: `dispatch` logs each request once, without its query string."""

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.send_error(413 if length > MAX_BODY else 400)
            return
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=url.query,
            headers=self.headers,
            body=self.rfile.read(length) if length else b"",
            secure=self.server.ssl_context is not None,
        )
        response = dispatch(self.server.emulator, request)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)


class _Server(ThreadingHTTPServer):
    emulator: EmulatorState

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.ssl_context = ssl_context
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup, slow on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # and no Nagle wait at all
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        sys.stderr.write(f"connection from {client_address[0]} failed: {error!r}\n")


def origin(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def serve(
    *, host: str, port: int, browser_port: int, seed_path: Path, state_dir: Path, test_api: bool
) -> None:
    """Run until SIGINT or SIGTERM. Raises SeedError or OSError when it cannot start."""
    pki = ensure_pki(state_dir, host)
    servers: list[_Server] = []
    try:
        servers.append(_Server(host, port, pki.server_context()))
        servers.append(_Server(host, browser_port, None))
        https, http = servers
        https_origin = origin("https", host, https.server_address[1])
        browser_origin = origin("http", host, http.server_address[1])
        state = EmulatorState(
            load_seed(seed_path, emulator_url=https_origin),
            signer=Signer(pki.signing_key, pki.kid),
            origin=https_origin,
            browser_origin=browser_origin,
            test_api=test_api,
        )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        for server in servers:
            server.emulator = state
            threading.Thread(target=server.serve_forever, daemon=True).start()
        print(
            f"entra-emulator ready at {https_origin} (browser pages at {browser_origin})",
            flush=True,
        )
        stop.wait()
        for server in servers:
            server.shutdown()
    finally:
        for server in servers:
            server.server_close()
