"""Hostile requests against every console endpoint, as a sweep (the HTTP side of
tests/server/test_hostile_rpc.py): bad JSON, JSON nested past any parser's depth, huge and
mislabelled bodies, wrong field types, hostile ids and numbers in every query and field, no
CSRF token, too many query fields. Each answer is a 4xx (or a 2xx where the input is fine)
with one JSON line {"error": ...}; never a 500, and the console logs no traceback.

A route the console serves that ROUTES does not name fails test_the_table_names_every_route.
"""

from __future__ import annotations

import ast
import http.client
import inspect
import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.api.status import MAX_DETAILS_BYTES
from marketplace.console import server as console_server
from marketplace.console.server import CSRF_HEADER, MAX_BODY_BYTES
from tests.console.conftest import Answer, Browserless, funded_key, running_console
from tests.server.market_process import MarketProcess

# GET routes with the query arguments each reads; POST routes with their body fields.
GET_ROUTES: dict[str, tuple[str, ...]] = {
    "/": (),
    "/index.html": (),
    "/login": ("token",),
    "/api/session": (),
    "/api/market": (),
    "/api/account": (),
    "/api/deployments": (),
    "/api/deployment": ("id",),
    "/api/provider": ("address",),
    "/api/reports": (),
    "/api/report": ("name",),
    "/api/plot": ("name", "plot"),
    "/events/market": ("after",),
    "/events/provider": (),
    "/events/deployment": ("id", "after"),
    "/events/logs": ("lease", "after"),
}
POST_ROUTES: dict[str, tuple[str, ...]] = {
    "/api/validate": ("sdl",),
    "/api/deploy": ("sdl", "deposit", "force"),
    "/api/deposit": ("id", "amount"),
    "/api/close": ("id",),
    "/api/accept": ("bid",),
}
# Values a hostile page or script would put in any id, name or number.
HOSTILE_VALUES = (
    "",
    "x" * 20_000,
    "D1/../../etc/passwd",
    "\x00\x1b[31m\n\r",
    "-1",
    "-9223372036854775809",
    "99999999999999999999999999",
    "1e999",
    "NaN",
    "0x10",
    "D1",
    "gm1" + "a" * 32,
    "☃" * 1000,
)
# Whole bodies: not JSON, not an object, deeper than any parser, wrong types.
HOSTILE_BODIES: tuple[bytes, ...] = (
    b"",
    b"{",
    b"\xff\xfe\x00garbage",
    b"[]",
    b"null",
    b'"sdl"',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"sdl": 1, "id": null, "amount": [], "bid": {}, "deposit": true}',
    b'{"sdl": "' + b"\\ud800" * 10 + b'"}',
    b'{"id": 1e999, "amount": -1e999}',
)


def test_the_table_names_every_route() -> None:
    """Every path literal the console's _get/_post compare against is in the tables."""
    source = inspect.getsource(console_server.ConsoleHandler)
    tree = ast.parse(source)
    served: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name):
            if node.left.id != "path":
                continue
            for right in node.comparators:
                for c in ast.walk(right):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str):
                        served.add(c.value)
    assert served - {*GET_ROUTES, *POST_ROUTES} == set()


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketProcess]:
    with MarketProcess.start(tmp_path_factory.mktemp("console") / "market") as running:
        yield running


def assert_refusal_or_answer(what: str, answer: Answer) -> None:
    assert answer.status < 500, f"{what}: {answer.status} {answer.body[:300]!r}"
    if answer.status >= 400:
        error = answer.doc.get("error")
        assert isinstance(error, str) and error, f"{what}: {answer.status} {answer.body[:300]!r}"
        one_line = "\n" not in error and len(error.encode()) <= MAX_DETAILS_BYTES
        assert one_line, f"{what}: {error[:300]!r}"


def raw(base: str, method: str, target: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One request as sent, byte for byte (urllib would fix what a hostile client breaks)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        reply = connection.getresponse()
        data = reply.read()
        kind = reply.getheader("Content-Type") or ""
        doc = json.loads(data) if kind.startswith("application/json") and data else {}
        return Answer(reply.status, doc, dict(reply.getheaders()), data)
    finally:
        connection.close()


def test_every_endpoint_refuses_hostile_input_in_one_line(
    market: MarketProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = funded_key(market)
    caplog.set_level(logging.WARNING, logger="gpumarket.console")
    with running_console(market.address, key, reports=tmp_path) as console:
        page = Browserless(console.url).login()
        cookies = "; ".join(f"{c.name}={c.value}" for c in page.jar)
        base_headers = {"Host": "127.0.0.1", "Cookie": cookies}
        sent = 0
        for route, args in GET_ROUTES.items():
            if route.startswith("/events/"):
                continue  # live feeds: their bad arguments below, with a short read
            for name in args:
                for value in HOSTILE_VALUES:
                    query = urllib.parse.urlencode({n: value if n == name else "D1" for n in args})
                    answer = page.get(f"{route}?{query}")
                    assert_refusal_or_answer(f"GET {route} {name}={value[:30]!r}", answer)
                    sent += 1
        for route in ("/events/deployment", "/events/logs"):
            for value in HOSTILE_VALUES:
                for name in GET_ROUTES[route]:
                    if name == "after" or value in ("D1",):
                        continue
                    target = f"{route}?{urllib.parse.urlencode({name: value, 'after': '0'})}"
                    answer = raw(console.url, "GET", target, b"", base_headers)
                    assert_refusal_or_answer(f"GET {target[:60]}", answer)
                    sent += 1
            for after in ("-1", "x", "9" * 40):
                target = f"{route}?id=D1&lease=D1&after={after}"
                answer = raw(console.url, "GET", target, b"", base_headers)
                assert_refusal_or_answer(f"GET {target}", answer)
                sent += 1
        many_fields = "&".join(f"f{i}=1" for i in range(200))
        for route in ("/api/account", "/api/deployment", "/nope"):
            answer = raw(console.url, "GET", f"{route}?{many_fields}", b"", base_headers)
            assert_refusal_or_answer(f"GET {route} with 200 query fields", answer)
            assert answer.status == 400, answer
            sent += 1

        post_headers = {
            **base_headers,
            "Content-Type": "application/json",
            CSRF_HEADER: page.csrf,
        }
        for route, fields in POST_ROUTES.items():
            for body in HOSTILE_BODIES:
                headers = {**post_headers, "Content-Length": str(len(body))}
                answer = raw(console.url, "POST", route, body, headers)
                assert_refusal_or_answer(f"POST {route} {body[:40]!r}", answer)
                assert 400 <= answer.status < 500, (route, body[:40], answer.status)
                sent += 1
            for name in fields:
                for value in HOSTILE_VALUES:
                    doc = {f: value if f == name else "1" for f in fields}
                    answer = page.post(route, doc)
                    assert_refusal_or_answer(f"POST {route} {name}={value[:30]!r}", answer)
                    sent += 1
            no_csrf = {k: v for k, v in post_headers.items() if k != CSRF_HEADER}
            refusals = {
                "no CSRF token": (no_csrf, b"{}", 403),
                "a wrong CSRF token": ({**post_headers, CSRF_HEADER: "0" * 64}, b"{}", 403),
                "text/plain": ({**post_headers, "Content-Type": "text/plain"}, b"{}", 415),
                "no Content-Length": (post_headers, b"", 411),
                "a negative Content-Length": ({**post_headers, "Content-Length": "-5"}, b"", 411),
                "a body past the limit": (
                    {**post_headers, "Content-Length": str(MAX_BODY_BYTES + 1)},
                    b"",
                    413,
                ),
            }
            for label, (headers, body, status) in refusals.items():
                if body and "Content-Length" not in headers:
                    headers = {**headers, "Content-Length": str(len(body))}
                answer = raw(console.url, "POST", route, body, headers)
                assert_refusal_or_answer(f"POST {route} with {label}", answer)
                assert answer.status == status, (route, label, answer.status, answer.doc)
                sent += 1
        for method in ("PUT", "DELETE", "PATCH"):
            answer = raw(console.url, method, "/api/close", b"{}", post_headers)
            assert answer.status == 405, (method, answer)
        assert page.get("/api/account").status == 200, "the console still answers"
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not tracebacks, [r.getMessage() for r in tracebacks][:5]
    assert sent >= 300, sent
