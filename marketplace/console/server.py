"""The console's HTTP server: the page and its assets, JSON endpoints, Server-Sent Events.

A stdlib ThreadingHTTPServer (one thread per connection; a live feed holds its thread). Every
input is hostile: bodies are bounded (Content-Length required), ids checked, errors answered as
JSON {"error": "one line"} with the right status, never a traceback (those go to the log).

Who may talk to it:
- on loopback, any local browser page that this server served: the Host header must name the
  loopback address (a rebound DNS name is refused), and
- off loopback, only over TLS, with the login token: /login?token=T sets it as an HttpOnly
  cookie, compared in constant time on every request (a script may send
  `Authorization: Bearer T` instead).
State-changing requests (POST) also need the session's CSRF token in the X-CSRF-Token header:
an HMAC of the session cookie that only a page of this origin can read (/api/session).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import queue
import secrets
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import Message as ProtoMessage

from marketplace.api.addresses import is_loopback
from marketplace.api.client import MarketUnavailable
from marketplace.api.status import details_of
from marketplace.console.api import ConsoleApi, Doc, Feed, Json, event_doc, log_doc
from marketplace.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MarketError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from marketplace.core.limits import MAX_MANIFEST_BYTES, whole_number

log = logging.getLogger("gpumarket.console")
Message = TypeVar("Message", bound=ProtoMessage)

MAX_BODY_BYTES = 2 * MAX_MANIFEST_BYTES + 64 * 1024  # an SDL as a JSON string, escapes and all
KEEPALIVE_S = 15.0  # a comment line on idle live feeds, so a gone browser is noticed
AUTH_COOKIE = "gm_auth"
SESSION_COOKIE = "gm_session"
CSRF_HEADER = "X-CSRF-Token"
CSP = "Content-Security-Policy"
IMMUTABLE = "public, max-age=31536000, immutable"  # a versioned asset URL never changes
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ERROR_STATUS: tuple[tuple[type[MarketError], HTTPStatus], ...] = (
    (InvalidArgument, HTTPStatus.BAD_REQUEST),
    (NotFound, HTTPStatus.NOT_FOUND),
    (PermissionDenied, HTTPStatus.FORBIDDEN),
    (Unauthenticated, HTTPStatus.FORBIDDEN),  # the market refused the console key's signature
    (AlreadyExists, HTTPStatus.CONFLICT),
    (FailedPrecondition, HTTPStatus.CONFLICT),
    (MarketUnavailable, HTTPStatus.SERVICE_UNAVAILABLE),
    (Unavailable, HTTPStatus.SERVICE_UNAVAILABLE),
)


class HttpError(Exception):
    """A refusal with its status and a one-line message for the browser."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ConsoleConfig:
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None  # required off loopback; None on loopback: no login
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def check(self) -> None:
        """Refuse to serve off loopback without TLS and a token (as `market serve` does)."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("--https-cert and --https-key go together")
        if is_loopback(self.host):
            return
        if self.tls_cert is None:
            raise InvalidArgument(
                f"{self.host} is not a loopback address: serving the console there needs TLS "
                "(--https-cert and --https-key)"
            )
        if not self.token:
            raise InvalidArgument(f"{self.host} is not a loopback address: a login token is needed")


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of static/ by name, read once: (bytes, content type)."""
    folder = resources.files("marketplace.console").joinpath("static")
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    return assets


@dataclass(frozen=True)
class Asset:
    body: bytes
    kind: str  # its Content-Type
    version: str  # a digest of the bytes: /static/NAME?v=VERSION may be cached for good


def versioned(files: dict[str, tuple[bytes, str]]) -> dict[str, Asset]:
    """The assets, each with its version; the page names each asset by its versioned URL
    (/static/app.js?v=…), so a browser keeps them across page loads and asks again only when
    the package changed: a later page load paints without waiting on the assets."""
    assets = {
        name: Asset(body, kind, hashlib.sha256(body).hexdigest()[:16])
        for name, (body, kind) in files.items()
    }
    page = assets["index.html"]
    body = page.body
    for name, asset in assets.items():
        body = body.replace(
            f'"/static/{name}"'.encode(), f'"/static/{name}?v={asset.version}"'.encode()
        )
    assets["index.html"] = Asset(body, page.kind, page.version)
    return assets


@dataclass(frozen=True)
class Page:
    """The page with its stylesheet and script inlined: the first paint waits on no other
    request. The market's reading goes between `head` and `tail` (before the script); the
    Content-Security-Policy allows exactly these inline blocks, by their digests."""

    head: bytes
    tail: bytes
    csp: str


def inline_page(assets: dict[str, Asset]) -> Page:
    html, css, js = (assets[n].body for n in ("index.html", "app.css", "app.js"))
    link = f'<link rel="stylesheet" href="/static/app.css?v={assets["app.css"].version}">'
    script = f'<script src="/static/app.js?v={assets["app.js"].version}" defer></script>'
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    if link.encode() not in html or script.encode() not in html or b"</" in css + js:
        head, _, rest = html.partition(b"</body>")  # not inlinable: served as files
        return Page(head, b"</body>" + rest, policy)
    html = html.replace(link.encode(), b"<style>" + css + b"</style>")
    head, _, rest = html.replace(script.encode() + b"\n", b"").partition(b"</body>")
    tail = b"<script>" + js + b"</script>\n</body>" + rest

    def digest(body: bytes) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"

    policy = policy.replace("style-src 'self'", f"style-src 'self' {digest(css)}")
    policy = policy.replace("script-src 'self'", f"script-src 'self' {digest(js)}")
    return Page(head, tail, policy)


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, config: ConsoleConfig, api: ConsoleApi) -> None:
        config.check()
        self.config = config
        self.api = api
        self.assets = versioned(load_assets())
        self.page = inline_page(self.assets)
        self.secret = secrets.token_bytes(32)
        self.stopping = threading.Event()
        family = socket.AF_INET6 if ":" in config.host.strip("[]") else socket.AF_INET
        self.address_family = family
        super().__init__((config.host.strip("[]"), config.port), ConsoleHandler)
        if config.tls_cert is not None and config.tls_key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(config.tls_cert, config.tls_key)
            # the handshake runs on the connection's own thread, not the accepting one
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert else "http"
        host = self.config.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"{scheme}://{host}:{self.port}"

    @property
    def login_url(self) -> str:
        return f"{self.url}/login?token={self.config.token}" if self.config.token else self.url

    def csrf_for(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    def handle_error(self, request: object, client_address: object) -> None:
        """A connection that failed outside a request (a TLS handshake refused, a client gone)
        is logged in one line, not as socketserver's traceback on stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError | ConnectionError | TimeoutError):
            log.info("console connection from %s dropped: %s", client_address, error)
            return
        log.exception("console connection from %s failed", client_address)

    def serve(self) -> threading.Thread:
        """Serve on a thread of its own (tests, the benchmark); stop with close()."""
        self.api.start()
        thread = threading.Thread(target=self.serve_forever, name="console-http", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.api.close()


class Writer(Protocol):
    def __call__(self, chunk: bytes) -> None: ...


class ConsoleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ConsoleServer
    server_version = "gpumarket-console"
    sys_version = ""

    # --- plumbing ---------------------------------------------------------------------------

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def do_PUT(self) -> None:
        self._refuse_method()

    def do_DELETE(self) -> None:
        self._refuse_method()

    def do_PATCH(self) -> None:
        self._refuse_method()

    def _refuse_method(self) -> None:
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{self.command} is not served"})

    def _handle(self, route: Callable[[str, dict[str, str]], None]) -> None:
        url = urlsplit(self.path)
        try:
            query = _query(url.query)
            self._check_host()
            if url.path != "/login":
                self._check_login()
            route(url.path, query)
        except HttpError as exc:  # one bounded line: a message may quote a 20 KB id
            self._send_json(exc.status, {"error": details_of(exc)})
        except MarketError as exc:
            status = next(
                (s for cls, s in ERROR_STATUS if isinstance(exc, cls)), HTTPStatus.BAD_GATEWAY
            )
            first = str(exc).splitlines()[0] if str(exc) else status.phrase
            self._send_json(status, {"error": details_of(Exception(first))})
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception:  # the page gets one line; the log gets the traceback
            log.exception("console request %s %s failed", self.command, url.path)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal error in the console; its log has the details"},
            )

    def _check_host(self) -> None:
        """On loopback, only a Host naming loopback: a page whose DNS name was rebound to
        127.0.0.1 sends its own name, and is refused."""
        if not is_loopback(self.server.config.host):
            return
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if not is_loopback(host):
            raise HttpError(HTTPStatus.MISDIRECTED_REQUEST, "the console answers only on loopback")

    def _cookies(self) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        with contextlib.suppress(CookieError):  # a garbled header counts as no cookies
            jar.load(self.headers.get("Cookie") or "")
        return jar

    def _cookie(self, name: str) -> str:
        morsel = self._cookies().get(name)
        return morsel.value if morsel is not None else ""

    def _check_login(self) -> None:
        token = self.server.config.token
        if not token:
            return
        offered = self._cookie(AUTH_COOKIE)
        bearer = self.headers.get("Authorization") or ""
        if bearer.startswith("Bearer "):
            offered = bearer[len("Bearer ") :]
        if not hmac.compare_digest(offered.encode(), token.encode()):
            raise HttpError(
                HTTPStatus.UNAUTHORIZED,
                "log in with the link `gpumarket console` printed (…/login?token=…)",
            )

    def _session(self) -> tuple[str, bool]:
        """The browser's session id, and whether it is new (to be set as a cookie)."""
        session = self._cookie(SESSION_COOKIE)
        if len(session) == 43 and session.replace("-", "").replace("_", "").isalnum():
            return session, False
        return secrets.token_urlsafe(32), True

    def _cookie_header(self, name: str, value: str) -> str:
        secure = "; Secure" if self.server.config.tls_cert else ""
        return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"

    def _check_csrf(self) -> None:
        session = self._cookie(SESSION_COOKIE)
        offered = self.headers.get(CSRF_HEADER) or ""
        expected = self.server.csrf_for(session) if session else ""
        if not session or not hmac.compare_digest(offered.encode(), expected.encode()):
            raise HttpError(
                HTTPStatus.FORBIDDEN, "missing or wrong CSRF token: reload the console page"
            )

    def _body(self) -> dict[str, Json]:
        """The request's JSON object, bounded by Content-Length before a byte is read."""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        length = whole_number(self.headers.get("Content-Length") or "")
        if length is None:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body over {MAX_BODY_BYTES // 1024} KiB; a manifest is at most 1 MiB",
            )
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        except RecursionError:  # [[[[...: json recurses per level, 2 bytes a level
            raise HttpError(
                HTTPStatus.BAD_REQUEST, "the body's JSON is nested too deeply"
            ) from None
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        kind: str,
        headers: Iterable[tuple[str, str]] = (),
        cache: str = "no-store",
        csp: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        security = SECURITY_HEADERS if csp is None else {**SECURITY_HEADERS, CSP: csp}
        for name, value in (*security.items(), *headers):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(
        self, status: HTTPStatus, doc: Doc, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8", headers)

    # --- routes -----------------------------------------------------------------------------

    def _get(self, path: str, q: dict[str, str]) -> None:
        api = self.server.api
        if path in ("/", "/index.html"):
            self._page()
        elif path == "/login":
            self._login(q.get("token", ""))
        elif path.startswith("/static/"):
            self._asset(path.removeprefix("/static/"), q.get("v", ""))
        elif path == "/api/session":
            session, new = self._session()
            headers = [("Set-Cookie", self._cookie_header(SESSION_COOKIE, session))] if new else []
            doc = {**api.session(), "csrf": self.server.csrf_for(session)}
            self._send_json(HTTPStatus.OK, doc, headers)
        elif path == "/api/market":
            self._send_json(HTTPStatus.OK, api.sampler.latest()[1])
        elif path == "/api/account":
            self._send_json(HTTPStatus.OK, api.account())
        elif path == "/api/deployments":
            self._send_json(HTTPStatus.OK, api.deployments())
        elif path == "/api/deployment":
            self._send_json(HTTPStatus.OK, api.deployment(_arg(q, "id")))
        elif path == "/api/provider":
            self._send_json(HTTPStatus.OK, api.provider(q.get("address", "")))
        elif path == "/api/reports":
            self._send_json(HTTPStatus.OK, api.reports.listing())
        elif path == "/api/report":
            self._send_json(HTTPStatus.OK, api.reports.report(_arg(q, "name")))
        elif path == "/api/plot":
            png = api.reports.plot(_arg(q, "name"), _arg(q, "plot"))
            self._send(HTTPStatus.OK, png, "image/png")
        elif path == "/events/market":
            self._market_events(q)
        elif path == "/events/provider":
            self._provider_events()
        elif path == "/events/deployment":
            feed = api.watch(_arg(q, "id"), self._resume_after(q))
            self._feed_events(feed, lambda m: ("event", m.seq, event_doc(m)))
        elif path == "/events/logs":
            logs = api.logs(_arg(q, "lease"), self._resume_after(q))
            self._feed_events(logs, lambda m: ("log", m.seq, log_doc(m)))
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, f"nothing at {path[:100]}")

    def _post(self, path: str, q: dict[str, str]) -> None:
        self._check_csrf()
        api = self.server.api
        body = self._body()
        if path == "/api/validate":
            doc = api.validate(_field(body, "sdl"))
        elif path == "/api/deploy":
            doc = api.deploy(
                _field(body, "sdl"), _field(body, "deposit"), body.get("force") is True
            )
        elif path == "/api/deposit":
            doc = api.deposit(_field(body, "id"), _field(body, "amount"))
        elif path == "/api/close":
            doc = api.close_deployment(_field(body, "id"))
        elif path == "/api/accept":
            doc = api.accept(_field(body, "bid"))
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, f"nothing at {path[:100]}")
        self._send_json(HTTPStatus.OK, doc)

    def _page(self) -> None:
        page = self.server.page
        # the market's newest reading comes with the page: painted with no round trip
        body = page.head + self.server.api.sampler.boot_block() + page.tail
        session, new = self._session()
        headers = [("Set-Cookie", self._cookie_header(SESSION_COOKIE, session))] if new else []
        self._send(HTTPStatus.OK, body, CONTENT_TYPES[".html"], headers, csp=page.csp)

    def _login(self, token: str) -> None:
        expected = self.server.config.token
        if not expected:
            self._redirect("/")
            return
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "wrong login token")
        self._redirect("/", [("Set-Cookie", self._cookie_header(AUTH_COOKIE, token))])

    def _redirect(self, where: str, headers: list[tuple[str, str]] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", [("Location", where), *(headers or [])])

    def _asset(self, name: str, version: str) -> None:
        """An asset: kept for good under its current version's URL; else revalidated (ETag)."""
        found = self.server.assets.get(name)
        if found is None:
            raise HttpError(HTTPStatus.NOT_FOUND, "no such asset")
        etag = f'"{found.version}"'
        cache = IMMUTABLE if version == found.version else "no-cache"
        headers = [("ETag", etag)]
        if etag in (self.headers.get("If-None-Match") or ""):
            self._send(HTTPStatus.NOT_MODIFIED, b"", found.kind, headers, cache)
            return
        self._send(HTTPStatus.OK, found.body, found.kind, headers, cache)

    def _resume_after(self, q: dict[str, str]) -> int:
        """Where a live feed resumes: EventSource's Last-Event-ID on a reconnect, else ?after."""
        text = self.headers.get("Last-Event-ID") or q.get("after") or "0"
        after = whole_number(text)
        if after is None:
            raise HttpError(HTTPStatus.BAD_REQUEST, "after: not a sequence number")
        return after

    # --- live feeds (Server-Sent Events) ----------------------------------------------------

    def _start_events(self) -> Writer:
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Connection", "close")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

        def write(chunk: bytes) -> None:
            self.wfile.write(chunk)
            self.wfile.flush()

        return write

    def _market_events(self, q: dict[str, str]) -> None:
        """Each new market reading, its version as the event id; the page names the version
        it came with (?after=, or Last-Event-ID on a reconnect), which is not sent again."""
        sampler = self.server.api.sampler
        seen = (
            self._resume_after(q) if (q.get("after") or self.headers.get("Last-Event-ID")) else -1
        )
        write = self._start_events()
        version, doc = sampler.latest()
        if doc and version != seen:
            write(sse("market", doc, version))
        while not self.server.stopping.is_set():
            newer, doc = sampler.wait_newer(version, KEEPALIVE_S)
            write(sse("market", doc, newer) if newer != version else b": keepalive\n\n")
            version = newer

    def _provider_events(self) -> None:
        """The provider view's document, read again every refresh and sent when it changed
        (telemetry comes with the agent's heartbeats; declines as they happen). A failed read
        is sent as a `failure` and tried again at the next refresh."""
        api = self.server.api
        write = self._start_events()
        sent: Doc | None = None
        idle_s = 0.0
        while not self.server.stopping.is_set():
            try:
                doc, kind = api.provider(), "provider"
            except MarketError as exc:
                doc, kind = {"error": str(exc).splitlines()[0] if str(exc) else "failed"}, "failure"
            if doc != sent:
                write(sse(kind, doc))
                sent, idle_s = doc, 0.0
            elif idle_s >= KEEPALIVE_S:
                write(b": keepalive\n\n")
                idle_s = 0.0
            self.server.stopping.wait(api.refresh_s)
            idle_s += api.refresh_s

    def _feed_events(
        self, feed: Feed[Message], to_doc: Callable[[Message], tuple[str, int, Doc]]
    ) -> None:
        """Relay one gRPC stream: a pump thread reads it into a queue, this thread writes;
        a gone browser (a failed write) cancels the stream."""
        items: queue.Queue[tuple[str, int, Doc] | None] = queue.Queue(maxsize=1000)
        failure: list[str] = []

        def pump() -> None:
            try:
                for message in feed:
                    items.put(to_doc(message))
            except MarketError as exc:
                failure.append(str(exc))
            finally:
                items.put(None)

        threading.Thread(target=pump, name="console-feed", daemon=True).start()
        try:
            write = self._start_events()
            for item in _drain(items, self.server.stopping):
                if item is None:
                    write(b": keepalive\n\n")
                    continue
                kind, seq, doc = item
                write(sse(kind, doc, seq))
            if failure:
                write(sse("failure", {"error": failure[0]}))
            write(sse("end", {}))
        finally:
            feed.cancel()


def _drain(
    items: queue.Queue[tuple[str, int, Doc] | None], stopping: threading.Event
) -> Iterator[tuple[str, int, Doc] | None]:
    """The queue's items until its end (None put by the pump); None for an idle interval."""
    while not stopping.is_set():
        try:
            item = items.get(timeout=KEEPALIVE_S)
        except queue.Empty:
            yield None
            continue
        if item is None:
            return
        yield item


def sse(event: str, doc: Doc, event_id: int | None = None) -> bytes:
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def _query(text: str) -> dict[str, str]:
    """The query's fields (the first value of each); more than 20 is a client's error."""
    try:
        return {k: v[0] for k, v in parse_qs(text, max_num_fields=20).items()}
    except ValueError:  # parse_qs: "Max number of fields exceeded"
        raise HttpError(HTTPStatus.BAD_REQUEST, "the query has more than 20 fields") from None


def _arg(q: dict[str, str], name: str) -> str:
    value = q.get(name)
    if not value:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the query needs {name}=")
    return value


def _field(body: dict[str, Json], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the body needs a string field {name!r}")
    if not value.isascii():  # JSON may carry lone surrogates ("\ud800"), which no text holds
        try:
            value.encode()
        except UnicodeEncodeError:
            raise HttpError(
                HTTPStatus.BAD_REQUEST, f"the body's field {name!r} is not valid Unicode text"
            ) from None
    return value
