"""The web console's figures in real headless Chromium (prints them; no assertions).

    python bench/bench_console.py [--providers 1000] [--orders 200] [--loads 10] [--events 40]

A `gpumarket market serve` subprocess (real SQLite in a temp dir) holds --providers registered
providers (H100 boxes over five regions, registered from a thread pool) and --orders open
orders (deployments with a 5-minute bid window), plus a few cleared GPU leases so the price
chart has data. The console serves it in this process over real gRPC; Chromium
(/usr/bin/chromium, driven by Playwright) loads it over loopback.

1. page load: a fresh page loads the market view --loads times (after one cold load, shown
   apart: the browser's first renderer start). First contentful paint (the shell) and first
   meaningful paint (the market's numbers painted: the app's `gm:market-painted` mark, taken
   as that frame starts, or the first contentful paint if later), from Chromium's performance
   timeline: p50/p99 in ms; and as a ratio to the same-run baseline, a
   one-line HTML page from a stdlib server on the same loopback (the box is shared and noisy).
2. event to page: a tenant page shows one deployment with an open order; a provider declines
   it (a signed DeclineOrder, one per provider) and the time from just before the call to the
   page painting the decline in its live event list is measured, --events times: p50/p99.
3. market view (polled, for context): from a new provider's registration to the market view
   showing the new count, with the console reading the market every --refresh seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from marketplace.api.client import MarketClient, ProviderClient, TenantClient  # noqa: E402
from marketplace.console.api import ConsoleApi  # noqa: E402
from marketplace.console.server import ConsoleConfig, ConsoleServer  # noqa: E402
from marketplace.identity import Key  # noqa: E402
from marketplace.polling import wait_until  # noqa: E402
from marketplace.server.testing import gpu_sdl, provider_registration  # noqa: E402
from tests.server.market_process import MarketProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
REGIONS = ("eu", "us-east", "us-west", "ap-south", "sa-east")

SEEN_JS = """() => {
  window.__seen = {};
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      const m = /bench-(\\d+)/.exec(n.textContent || "");
      if (m) requestAnimationFrame(() => { window.__seen[m[1]] = Date.now(); });
    }
  }).observe(document.getElementById("events"), { childList: true });
}"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def register(address: str, count: int) -> list[ProviderClient]:
    def one(i: int) -> ProviderClient:
        client = ProviderClient(address, Key.generate())
        client.register(provider_registration(f"p{i}", REGIONS[i % len(REGIONS)]))
        return client

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def populate(
    market: MarketProcess, providers: int, orders: int
) -> tuple[Key, list[ProviderClient]]:
    started = time.perf_counter()
    clients = register(market.address, providers)
    print(f"registered {providers} providers in {time.perf_counter() - started:.1f} s")
    tenant = Key.generate()
    with TenantClient(market.address, market.admin) as faucet:
        faucet.fund(tenant.address, 10**12)
    with TenantClient(market.address, tenant) as client:
        # a few cleared GPU leases, so the price chart has something to draw
        cleared = [client.create_deployment(gpu_sdl("3s", 50_000), 10**8) for _ in range(6)]
        in_eu = clients[:: len(REGIONS)]  # gpu_sdl places in region eu
        for n, dep in enumerate(cleared):
            for k, bidder in enumerate(in_eu[n * 3 : n * 3 + 3]):
                bidder.place_bid(dep.order_ids[0], 20_000 + 5_000 * k + 1_000 * n)
        started = time.perf_counter()
        for _ in range(orders):
            client.create_deployment(gpu_sdl("5m", 50_000), 10**8)
        print(f"opened {orders} orders in {time.perf_counter() - started:.1f} s")
        wait_until(
            lambda: all(client.get_deployment(d.id).lease_ids for d in cleared),
            30,
            "the GPU leases",
        )
    return tenant, clients


class BarePage(BaseHTTPRequestHandler):
    """The baseline: one line of HTML from a stdlib server on the same loopback."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>bare</title><p>hello</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def baseline_paints(page_factory: Callable[[], Page], loads: int) -> list[float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BarePage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    paints = []
    try:
        for _ in range(loads):
            page = page_factory()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_function(
                "() => performance.getEntriesByName('first-contentful-paint').length"
            )
            paints.append(
                page.evaluate(
                    "() => performance.getEntriesByName('first-contentful-paint')[0].startTime"
                )
            )
            page.close()
    finally:
        server.shutdown()
        server.server_close()
    return paints


def page_loads(
    page_factory: Callable[[], Page], url: str, loads: int
) -> tuple[list[float], list[float]]:
    fcp, fmp = [], []
    for _ in range(loads):
        page = page_factory()
        page.goto(url + "/#/market")
        page.wait_for_function(
            "() => performance.getEntriesByName('gm:market-painted').length"
            " && performance.getEntriesByName('first-contentful-paint').length"
        )
        contentful = page.evaluate(
            "() => performance.getEntriesByName('first-contentful-paint')[0].startTime"
        )
        marked = page.evaluate(
            "() => performance.getEntriesByName('gm:market-painted')[0].startTime"
        )
        fcp.append(contentful)
        # the mark is taken as the frame with the numbers starts; that frame is painted no
        # earlier than the first contentful paint
        fmp.append(max(marked, contentful))
        page.close()
    return fcp, fmp


def event_latency(
    page: Page, console_url: str, client: TenantClient, deciders: list[ProviderClient], n: int
) -> list[float]:
    dep = client.create_deployment(gpu_sdl("5m", 50_000), 10**8)
    page.goto(console_url + f"/#/deployment/{dep.id}")
    page.wait_for_selector("#events li")
    page.evaluate(SEEN_JS)
    latencies = []
    for i in range(n):
        sent = time.time() * 1000
        deciders[i].decline_order(dep.order_ids[0], f"bench-{i} no capacity")
        page.wait_for_function(f"() => window.__seen['{i}'] !== undefined", polling=5)
        latencies.append(page.evaluate(f"() => window.__seen['{i}']") - sent)
    return latencies


def market_latency(page: Page, console_url: str, address: str, n: int) -> list[float]:
    page.goto(console_url + "/#/market")
    page.wait_for_selector("#m-online")
    latencies = []
    for _ in range(n):
        before = int(page.inner_text("#m-online"))
        sent = time.time() * 1000
        register(address, 1)
        page.wait_for_function(
            f"() => Number(document.getElementById('m-online')?.textContent) > {before}",
            polling=5,
        )
        latencies.append(time.time() * 1000 - sent)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--market-events", type=int, default=5)
    parser.add_argument("--refresh", type=float, default=1.0)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-console-") as tmp,
        MarketProcess.start(Path(tmp) / "market", "--heartbeat-timeout", "900") as market,
    ):
        tenant, providers = populate(market, args.providers, args.orders)
        api = ConsoleApi(
            TenantClient(market.address, tenant),
            MarketClient(market.address, tenant),
            tenant,
            refresh_s=args.refresh,
        )
        server = ConsoleServer(ConsoleConfig("127.0.0.1", 0), api)
        server.serve()
        wait_until(lambda: bool(api.sampler.latest()[1]), 30, "the first market reading")
        doc = api.sampler.latest()[1]
        print(
            f"market: {doc['providers_online']} providers online, "
            f"{doc['open_orders']} open orders, prices for {list(doc['prices'])}"  # type: ignore[arg-type]
        )
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                cold = page_loads(browser.new_page, server.url, 1)  # the renderer's first start
                fcp, fmp = page_loads(browser.new_page, server.url, args.loads)
                bare = baseline_paints(browser.new_page, args.loads)
                page = browser.new_page()
                latencies = event_latency(page, server.url, api.tenant, providers[20:], args.events)
                polled = market_latency(page, server.url, market.address, args.market_events)
                browser.close()
        finally:
            server.close()
    print(
        f"\npage load over {args.loads} loads ({args.providers} providers, {args.orders} orders):"
    )
    print(
        f"  first load (cold browser) contentful {cold[0][0]:.0f} ms, meaningful {cold[1][0]:.0f} ms"
    )
    print(f"  first contentful paint    p50 {pct(fcp, 50):6.0f} ms   p99 {pct(fcp, 99):6.0f} ms")
    print(f"  first meaningful paint    p50 {pct(fmp, 50):6.0f} ms   p99 {pct(fmp, 99):6.0f} ms")
    print(
        f"  baseline: a one-line page from a stdlib server, first paint p50 {pct(bare, 50):.0f} ms;"
        f" console meaningful paint ÷ baseline = {pct(fmp, 50) / pct(bare, 50):.2f}"
    )
    print(f"event to page over {args.events} declines (WatchDeployment → SSE → DOM):")
    print(
        f"  p50 {pct(latencies, 50):6.0f} ms   p99 {pct(latencies, 99):6.0f} ms   "
        f"mean {statistics.mean(latencies):.0f} ms"
    )
    print(f"market view, polled every {args.refresh:g} s, over {args.market_events} registrations:")
    print(f"  p50 {pct(polled, 50):6.0f} ms   p99 {pct(polled, 99):6.0f} ms")


if __name__ == "__main__":
    main()
