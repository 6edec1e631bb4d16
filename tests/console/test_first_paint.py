"""What the first paint waits on (issue 15, item 4): the page carries its stylesheet, script and
the market's reading inline, allowed by digest in the Content-Security-Policy; the asset files
are cacheable under versioned URLs; the live feed goes on from the page's reading."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
from urllib.parse import urlsplit

from marketplace.console.server import IMMUTABLE, load_assets
from tests.console.conftest import Browserless, funded_key, running_console
from tests.helpers import registered_provider, wait_until
from tests.server.market_process import MarketProcess


def digest(body: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


def test_the_page_inlines_its_assets_and_the_policy_allows_exactly_them(
    market: MarketProcess,
) -> None:
    files = load_assets()
    with running_console(market.address, funded_key(market)) as console:
        wait_until(lambda: console.api.sampler.latest()[1], 10, "the first market reading")
        answer = Browserless(console.url).get("/")
    page = answer.body.decode()
    css = page.split("<style>")[1].split("</style>")[0]
    script = page.split("<script>")[1].split("</script>")[0]
    assert css.encode() == files["app.css"][0] and script.encode() == files["app.js"][0]
    assert page.index('id="boot-market"') < page.index("<script>")  # its data comes first
    assert "/static/app.js" not in page and "/static/app.css" not in page
    policy = answer.headers["Content-Security-Policy"]
    assert f"script-src 'self' {digest(script)};" in policy
    assert f"style-src 'self' {digest(css)};" in policy
    assert "unsafe-inline" not in policy and answer.headers["Cache-Control"] == "no-store"
    boot = json.loads(page.split('id="boot-market">')[1].split("</script>")[0])
    assert boot["version"] == console.api.sampler.latest()[0]


def test_assets_are_cached_for_good_under_their_version_and_revalidated_otherwise(
    market: MarketProcess,
) -> None:
    with running_console(market.address, funded_key(market)) as console:
        page = Browserless(console.url)
        icon = re.search(r'href="/static/icon\.svg\?v=(\w+)"', page.get("/").body.decode())
        assert icon is not None, "the page names its icon by version"
        version = console.assets["icon.svg"].version
        assert icon.group(1) == version
        kept = page.get(f"/static/icon.svg?v={version}")
        assert kept.status == 200 and kept.headers["Cache-Control"] == IMMUTABLE
        assert kept.body == load_assets()["icon.svg"][0]
        plain = page.get("/static/app.js")
        assert plain.status == 200 and plain.headers["Cache-Control"] == "no-cache"
        etag = plain.headers["ETag"]
        again = page.request("/static/app.js", headers={"If-None-Match": etag})
        assert again.status == 304 and again.body == b""
        stale = page.get("/static/app.js?v=0000")  # an older version's URL: not kept for good
        assert stale.status == 200 and stale.headers["Cache-Control"] == "no-cache"


def read_event(reply: http.client.HTTPResponse) -> tuple[int, dict[str, object]]:
    """The next `market` event of a Server-Sent Events stream: its id and data."""
    event_id, data = -1, ""
    while True:
        line = reply.readline().decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and data:
            return event_id, json.loads(data)


def test_the_live_feed_goes_on_from_the_pages_reading(market: MarketProcess) -> None:
    with running_console(market.address, funded_key(market)) as console:
        wait_until(lambda: console.api.sampler.latest()[1], 10, "the first market reading")
        version, doc = console.api.sampler.latest()
        where = urlsplit(console.url)
        fresh = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
        fresh.request("GET", "/events/market")
        first, sent = read_event(fresh.getresponse())  # no version named: the newest, now
        assert first >= version and sent["providers_online"] == doc["providers_online"]
        fresh.close()
        resumed = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
        resumed.request("GET", f"/events/market?after={version}")
        reply = resumed.getresponse()
        known = doc["providers_known"]
        assert isinstance(known, int)
        provider = registered_provider(market.address, "newcomer")
        try:
            while True:  # readings until the newcomer's; the page's own is never sent again
                newer, changed = read_event(reply)
                assert newer != version
                if changed["providers_known"] == known + 1:
                    break
        finally:
            provider.close()
            resumed.close()
