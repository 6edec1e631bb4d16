"""The console under test: a real `market serve` process (MarketProcess), the console's HTTP
server in this process over real gRPC to it, and an HTTP client that keeps cookies."""

from __future__ import annotations

import http.cookiejar
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from marketplace.api.client import MarketClient, TenantClient
from marketplace.console.api import ConsoleApi
from marketplace.console.server import CSRF_HEADER, ConsoleConfig, ConsoleServer
from marketplace.identity import Key
from tests.server.market_process import MarketProcess

FUNDS = 50_000_000


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    with MarketProcess.start(tmp_path / "market") as running:
        yield running


def funded_key(market: MarketProcess, amount: int = FUNDS) -> Key:
    key = Key.generate()
    with TenantClient(market.address, market.admin) as faucet:
        faucet.fund(key.address, amount)
    return key


@contextmanager
def running_console(
    address: str,
    key: Key,
    config: ConsoleConfig | None = None,
    reports: Path | None = None,
    refresh_s: float = 0.5,
) -> Iterator[ConsoleServer]:
    api = ConsoleApi(
        TenantClient(address, key), MarketClient(address, key), key, reports, refresh_s=refresh_s
    )
    server = ConsoleServer(config or ConsoleConfig("127.0.0.1", 0), api)
    server.serve()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Answer:
    status: int
    doc: dict[str, Any]  # JSON as the console sent it
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Browserless:
    """A client of the console as a page would be: cookies kept, the CSRF token sent."""

    base: str
    tls_context: ssl.SSLContext | None = None
    csrf: str = ""
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if self.tls_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self.tls_context))
        self.opener = urllib.request.build_opener(*handlers)

    def request(
        self,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if data is not None and self.csrf:
            all_headers.setdefault(CSRF_HEADER, self.csrf)
        req = urllib.request.Request(self.base + path, data=data, headers=all_headers)
        try:
            with self.opener.open(req, timeout=30) as reply:
                return _answer(reply.status, reply.read(), dict(reply.headers))
        except urllib.error.HTTPError as err:
            with err:
                return _answer(err.code, err.read(), dict(err.headers))

    def get(self, path: str) -> Answer:
        return self.request(path)

    def post(self, path: str, body: object) -> Answer:
        return self.request(path, body)

    def login(self) -> Browserless:
        """Open the session as the page does; keep its CSRF token."""
        answer = self.get("/api/session")
        assert answer.status == 200, answer.doc
        self.csrf = str(answer.doc["csrf"])
        return self


def _answer(status: int, body: bytes, headers: dict[str, str]) -> Answer:
    kind = headers.get("Content-Type", "")
    doc = json.loads(body) if kind.startswith("application/json") and body else {}
    return Answer(status, doc, headers, body)


def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $GPUMARKET_TEST_ARTIFACTS, else the test's tmp_path."""
    root = Path(os.environ.get("GPUMARKET_TEST_ARTIFACTS") or tmp_path / "artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root
