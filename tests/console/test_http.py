"""The console's HTTP edge without a browser: JSON endpoints over a real marketplace, and every
refusal (CSRF, login token, TLS off loopback, oversize bodies, hostile ids, a rebound Host)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from marketplace.api.client import TenantClient
from marketplace.console.server import MAX_BODY_BYTES, ConsoleConfig
from marketplace.core.errors import InvalidArgument
from marketplace.polling import wait_until
from tests.console.conftest import FUNDS, Browserless, funded_key, running_console
from tests.helpers import EXAMPLES, registered_provider
from tests.server.market_process import MarketProcess
from tests.server.test_tls import Authority

INFERENCE = (EXAMPLES / "inference.yaml").read_text()


def bad_line(sdl: str, line: int, replacement: str) -> str:
    lines = sdl.splitlines()
    lines[line - 1] = replacement
    return "\n".join(lines) + "\n"


def test_json_endpoints_deploy_top_up_close_and_refund(market: MarketProcess) -> None:
    key = funded_key(market)
    with running_console(market.address, key) as console:
        page = Browserless(console.url).login()
        assert page.get("/api/account").doc["address"] == key.address
        assert page.post("/api/validate", {"sdl": INFERENCE}).doc["ok"] is True

        created = page.post("/api/deploy", {"sdl": INFERENCE, "deposit": "5"})
        assert created.status == 200, created.doc
        dep_id = created.doc["deployment"]["id"]
        listed = page.get("/api/deployments").doc["deployments"]
        assert [d["id"] for d in listed] == [dep_id]

        topped = page.post("/api/deposit", {"id": dep_id, "amount": "1.5"})
        assert topped.doc["deployment"]["deposited"]["micro"] == "6500000"
        detail = page.get(f"/api/deployment?id={dep_id}").doc
        assert detail["orders"][0]["summary"]

        closed = page.post("/api/close", {"id": dep_id})
        assert closed.status == 200, closed.doc
        assert closed.doc["refund"] == {"micro": "6500000", "text": "6.500000 act"}
        assert closed.doc["account"]["balance"]["micro"] == str(FUNDS)


def test_a_bad_manifest_names_its_line_as_the_cli_does(market: MarketProcess) -> None:
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url).login()
        answer = page.post("/api/validate", {"sdl": bad_line(INFERENCE, 40, "      count: x")})
        assert answer.doc["ok"] is False
        (error,) = answer.doc["errors"]
        assert error["line"] == 40
        assert error["text"].startswith("sdl:40: deployment.model-server.anywhere.count:")
        refused = page.post("/api/deploy", {"sdl": "version: [", "deposit": "5"})
        assert refused.status == 400 and refused.doc["error"].startswith("not a valid manifest")
        assert page.get("/api/deployments").doc["deployments"] == []  # nothing was created


def test_another_tenants_deployment_is_not_visible(market: MarketProcess) -> None:
    other = funded_key(market)
    with TenantClient(market.address, other) as client:
        theirs = client.create_deployment(INFERENCE.encode(), 1_000_000).id
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url).login()
        assert page.get("/api/deployments").doc["deployments"] == []
        peek = page.get(f"/api/deployment?id={theirs}")
        # the market does not even say it exists
        assert (peek.status, peek.doc) == (404, {"error": f"deployment {theirs} not found"})
        closing = page.post("/api/close", {"id": theirs})
        assert closing.status in (403, 404), closing.doc
    with TenantClient(market.address, other) as client:
        assert client.get_deployment(theirs).state == 1  # still active: nothing changed


def test_state_changes_need_the_sessions_csrf_token(market: MarketProcess) -> None:
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url).login()
        body = {"sdl": INFERENCE, "deposit": "5"}
        for headers in ({"X-CSRF-Token": ""}, {"X-CSRF-Token": "0" * 64}):
            refused = page.request("/api/deploy", body, headers)
            assert refused.status == 403 and "CSRF" in str(refused.doc["error"])
        stranger = Browserless(console.url)  # no session cookie at all
        stranger.csrf = page.csrf  # a token stolen without its cookie is no use either
        assert stranger.post("/api/deploy", body).status == 403
        assert page.get("/api/deployments").doc["deployments"] == []
        assert page.post("/api/deploy", body).status == 200


def test_hostile_requests_get_one_line_json_errors(market: MarketProcess) -> None:
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url).login()
        cases = [
            (page.get("/api/deployment?id=../../etc/passwd"), 400, "not a valid id"),
            (page.get("/api/deployment"), 400, "needs id="),
            (page.get("/api/deployment?id=D999"), 404, "not found"),
            (page.get("/static/../server.py"), 404, "no such asset"),
            (page.get("/api/report?name=..%2F..%2Fetc"), 404, "no simulation report"),
            (page.get("/nowhere"), 404, "nothing at"),
            (page.request("/api/deploy", raw=b"{not json"), 400, "not JSON"),
            (page.request("/api/deploy", raw=b"[1, 2]"), 400, "JSON object"),
            (page.post("/api/deploy", {"sdl": 5, "deposit": "1"}), 400, "string field 'sdl'"),
            (page.post("/api/deploy", {"sdl": INFERENCE, "deposit": "-1"}), 400, "negative"),
            (
                page.post("/api/deploy", {"sdl": INFERENCE, "deposit": "10000"}),
                409,
                "exceeds your balance",
            ),
            (page.post("/api/deposit", {"id": "D1", "amount": "1e30"}), 400, "at most"),
            (
                page.request("/api/deploy", {}, {"Content-Type": "text/plain"}),
                415,
                "application/json",
            ),
        ]
        for answer, status, words in cases:
            assert (answer.status, True) == (status, words in str(answer.doc.get("error"))), (
                answer.status,
                answer.doc,
            )
            assert b"Traceback" not in answer.body
        put = urllib.request.Request(console.url + "/api/deploy", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(put, timeout=10)
        with refused.value as put_answer:
            assert put_answer.code == 405


def test_an_oversize_body_is_refused_before_it_is_read(market: MarketProcess) -> None:
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url).login()
        cookie = "; ".join(f"{c.name}={c.value}" for c in page.jar)
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        conn.putrequest("POST", "/api/validate")
        for name, value in {
            "Content-Type": "application/json",
            "Content-Length": str(MAX_BODY_BYTES + 1),
            "X-CSRF-Token": page.csrf,
            "Cookie": cookie,
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(b'{"sdl": "' + b"x" * 1000)  # the rest never comes: the answer must not wait
        answer = conn.getresponse()
        assert answer.status == 413
        assert "1 MiB" in json.loads(answer.read())["error"]
        conn.close()
        big = "#" * (1024 * 1024 + 1)
        over = page.post("/api/validate", {"sdl": big})
        assert over.doc["ok"] is False and "larger than 1 MiB" in str(over.doc["errors"])


def test_a_rebound_host_name_is_refused_on_loopback(market: MarketProcess) -> None:
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url)
        answer = page.request("/api/account", headers={"Host": f"evil.example:{console.port}"})
        assert answer.status == 421
        assert page.request("/", headers={"Host": f"localhost:{console.port}"}).status == 200


def test_a_login_token_guards_every_request(market: MarketProcess) -> None:
    config = ConsoleConfig("127.0.0.1", 0, token="s3cret-token")
    with running_console(market.address, funded_key(market), config) as console:
        page = Browserless(console.url)
        for path in ("/", "/api/account", "/static/app.js", "/events/market"):
            assert page.get(path).status == 401, path
        assert page.get("/login?token=wrong").status == 401
        assert page.get("/login?token=s3cret-token").status == 200  # redirected to the page
        cookie = next(c for c in page.jar if c.name == "gm_auth")
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert page.get("/api/account").status == 200
        script = Browserless(console.url)
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert script.request("/api/account", headers=bearer).status == 200


def test_off_loopback_it_needs_tls_and_a_token(market: MarketProcess, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="needs TLS"):
        ConsoleConfig("0.0.0.0", 0, token="t").check()
    with pytest.raises(InvalidArgument, match="token"):
        ConsoleConfig("0.0.0.0", 0, None, tmp_path / "c.pem", tmp_path / "k.pem").check()
    ca = Authority(tmp_path / "pki", "console-ca")
    leaf = ca.issue("console-server", server=True)
    config = ConsoleConfig("0.0.0.0", 0, "tok-123", leaf.cert, leaf.key)
    with running_console(market.address, funded_key(market), config) as console:
        trust = ssl.create_default_context(cafile=str(ca.cert))
        base = f"https://127.0.0.1:{console.port}"
        page = Browserless(base, tls_context=trust)
        assert page.get("/api/account").status == 401
        assert page.get("/login?token=tok-123").status == 200
        cookie = next(c for c in page.jar if c.name == "gm_auth")
        assert cookie.secure
        assert page.get("/api/account").status == 200
        with socket.create_connection(("127.0.0.1", console.port), timeout=5) as plain:
            plain.sendall(b"GET /api/account HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")  # no answer in the clear


def test_the_cli_serves_on_loopback_and_refuses_plain_http_elsewhere(
    market: MarketProcess, tmp_path: Path
) -> None:
    key_file = tmp_path / "me.pem"
    key_file.write_bytes(funded_key(market).to_pem())
    gpumarket = [sys.executable, "-c", "from marketplace.cli.main import main; main()"]
    cli = [*gpumarket, "console", "--market", market.address]
    refused = subprocess.run(
        [*cli, "--key", str(key_file), "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "Error: 0.0.0.0 is not a loopback address: serving the console there needs TLS "
        "(--https-cert and --https-key)"
    ]
    with subprocess.Popen(
        [*cli, "--key", str(key_file), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            assert first.startswith("console: http://127.0.0.1:"), first
            url = first.removeprefix("console: ")
            with urllib.request.urlopen(url + "/", timeout=10) as answer:
                assert b"gpumarket console" in answer.read()
        finally:
            proc.terminate()
            proc.wait(20)


def test_console_server_refuses_mismatched_tls_flags(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="go together"):
        ConsoleConfig("127.0.0.1", 0, None, tmp_path / "c.pem", None).check()


def opened_url(record: Path) -> str | None:
    return record.read_text().strip() or None if record.exists() else None


def test_simulate_open_shows_the_run_in_the_console(tmp_path: Path) -> None:
    """`gpumarket simulate --open`: the run's report page opens in the browser ($BROWSER, here
    a script that writes down the URL it was given) and serves the run's metrics and plots."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}.part && mv {opened}.part {opened}\n')
    browser.chmod(0o755)
    out = tmp_path / "sim-out" / "small-seed3"
    gpumarket = [sys.executable, "-c", "from marketplace.cli.main import main; main()"]
    scenario = [str(EXAMPLES / "scenario-small.yaml"), "--seed", "3", "--out", str(out)]
    with subprocess.Popen(
        [*gpumarket, "simulate", *scenario, "--open"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BROWSER": f"{browser} %s"},
        start_new_session=True,  # its own process group: the console runs as its child
    ) as proc:
        try:
            url = wait_until(lambda: opened_url(opened), 120, "the browser to be opened")
            base, _, fragment = url.partition("#")
            assert fragment == "/reports/small-seed3"
            with urllib.request.urlopen(base + "api/report?name=small-seed3", timeout=10) as r:
                report = json.loads(r.read())
            assert report["metrics"]["ledger.balanced"] is True
            assert "clearing_price.png" in report["plots"]
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a person would
            proc.wait(30)


def test_the_page_carries_the_market_reading_and_no_markup_from_it(market: MarketProcess) -> None:
    hostile = "</script><img src=x onerror=alert(1)>"
    provider = registered_provider(market.address, "hostile", region=hostile)
    try:
        with running_console(market.address, funded_key(market)) as console:
            wait_until(lambda: console.api.sampler.latest()[1], 10, "the first market reading")
            page = Browserless(console.url).get("/").body.decode()
            assert '<script type="application/json" id="boot-market">' in page
            assert hostile not in page  # escaped: it cannot end the data block
            data = page.split('id="boot-market">')[1].split("</script>")[0]
            assert [r["region"] for r in json.loads(data)["by_region"]] == [hostile]
    finally:
        provider.close()
