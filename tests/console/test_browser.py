"""The console in real headless Chromium (Debian's `chromium`, driven by Playwright) against a
real stack: `market serve`, two `provider run` agents (a replayed H100 box and a CPU box) and
Docker. Each view is screenshotted into $GPUMARKET_TEST_ARTIFACTS (else the test's tmp dir;
the path is printed), and checked for the accessibility basics: every input labelled, every
text colour at least 4.5:1 on its background, every control reachable with Tab.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from marketplace.api.client import TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.demo_stack import Stack
from marketplace.core.money import format_amount
from marketplace.identity import Key
from marketplace.server.testing import gpu_sdl
from tests.console.conftest import artifacts_dir, running_console
from tests.helpers import EXAMPLES, REPO, registered_provider

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
FUNDS = 20_000_000
DEPOSIT = 5_000_000
INFERENCE = (EXAMPLES / "inference.yaml").read_text()
PROVIDERS = {"h100": "provider-h100-replay.toml", "cpu": "provider-cpu.toml"}
UNDER_LOAD = REPO / "provider_agent" / "fixtures" / "h100_nvml_under_load.json"
LIVE_S = 30_000  # ms a live change may take to show (an auction, a container start)
expect.set_options(timeout=LIVE_S)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(heartbeat_timeout_s=5.0, root=tmp_path_factory.mktemp("stack"), keep_root=True)
    try:
        s.start_market()
        for name, file in PROVIDERS.items():
            s.add_provider(name, EXAMPLES / file)
            s.start_provider(name)
        s.wait_providers_online(list(PROVIDERS))
        yield s
    finally:
        s.close()
        print(s.logs())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = artifacts_dir(tmp_path_factory.mktemp("console-shots"))
    print(f"console screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real simulator runs (the small scenario, two seeds), plots and all."""
    root = tmp_path_factory.mktemp("sim-out")
    for seed in (1, 2):
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from marketplace.cli.main import main; main()",
                "simulate",
                str(EXAMPLES / "scenario-small.yaml"),
                "--seed",
                str(seed),
                "--out",
                str(root / f"small-seed{seed}"),
                "--json",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return root


def tenant(stack: Stack) -> Key:
    key = Key.generate()
    with TenantClient(stack.address, stack.admin_key()) as faucet:
        faucet.fund(key.address, FUNDS)
    return key


def new_page(browser: Browser, width: int = 1280, height: int = 900) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(LIVE_S)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def js_errors(page: Page) -> list[str]:
    found: list[str] = page.js_errors  # type: ignore[attr-defined]
    return [e for e in found if "status of 4" not in e]  # refused requests are the test's own


def shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


# --- the journey: deploy, watch, use, follow logs, close, refund ------------------------------


def test_deploy_the_inference_example_from_the_page_and_close_it(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    key = tenant(stack)
    with running_console(stack.address, key) as console:
        page = new_page(browser)
        page.goto(console.url + "/#/tenant")
        page.fill("#sdl", INFERENCE)
        expect(page.locator("#sdl-problems")).to_contain_text("valid: 1 placement group(s)")
        page.fill("#deposit", "5")
        shot(page, shots, "tenant")
        page.focus("#deploy")
        page.keyboard.press("Enter")  # the keyboard works the form and its confirmation
        expect(page.locator("#confirm")).to_be_visible()
        expect(page.locator("#confirm-text")).to_contain_text("lock 5 act")
        page.keyboard.press("Tab")  # Cancel has the focus first; Tab to Deploy
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"#/deployment/D\d+$"))
        dep_id = page.url.rsplit("/", 1)[1]

        # live: the bids and the lease come over the event feed, no reload
        events = page.locator("#events li")
        expect(events.filter(has_text="bid")).not_to_have_count(0)
        expect(page.locator("#events li[data-kind=lease_running]")).to_have_count(1)
        expect(page.locator("td", has_text="won: lowest eligible price")).to_have_count(1)
        link = page.locator("a.endpoint").first
        expect(link).to_be_visible()
        href = link.get_attribute("href")
        assert href is not None and href.startswith("http://")
        with page.context.expect_page() as opened:
            link.click()
        endpoint = opened.value
        endpoint.wait_for_load_state()
        assert endpoint.url.startswith(href)  # the link opened the lease's endpoint
        answer = endpoint.goto(href.rstrip("/") + "/health")
        assert answer is not None and answer.ok
        expect(endpoint.locator("body")).to_contain_text('"model":"tiny-llm"')
        endpoint.close()

        page.click("button.follow")
        expect(page.locator("#logs")).to_contain_text("serving on :8080")
        expect(page.locator("#time-left")).not_to_have_text("—")
        shot(page, shots, "deployment")

        page.click("#close-dep")
        expect(page.locator("#confirm-text")).to_contain_text(f"Close {dep_id}?")
        page.click("#confirm-ok")
        expect(page.locator("#refund")).to_contain_text("refunded to your balance")
        expect(page.locator("#events li[data-kind=deployment_closed]")).to_have_count(1)
        with TenantClient(stack.address, key) as client:
            dep = client.get_deployment(dep_id)
            paid = sum(client.get_lease(x).paid for x in dep.lease_ids)
            balance = client.get_account().balance
        assert dep.state == pb.DEPLOYMENT_CLOSED
        assert balance == FUNDS - paid  # every micro-unit not paid to the provider came back
        refund = page.locator("#refund").inner_text()
        assert refund.startswith(f"closed: {format_amount(DEPOSIT - paid)} refunded"), refund
        shot(page, shots, "deployment-closed")
        assert js_errors(page) == []


# --- a manual auction: the tenant picks the bid --------------------------------------------


def test_accept_a_bid_in_a_manual_auction(stack: Stack, browser: Browser, shots: Path) -> None:
    key = tenant(stack)
    bidder = registered_provider(stack.address, "manual-bidder", region="eu")
    try:
        with TenantClient(stack.address, key) as client:
            dep = client.create_deployment(gpu_sdl("1s", 50_000, ", manual: true"), DEPOSIT)
            bidder.place_bid(dep.order_ids[0], 30_000)
        with running_console(stack.address, key) as console:
            page = new_page(browser)
            page.goto(console.url + f"/#/deployment/{dep.id}")
            expect(page.locator("td", has_text="open: yours to accept")).to_have_count(1)
            # the agents in other regions said why they did not bid
            declines = page.locator("caption", has_text="declines").locator("..")
            expect(declines).to_contain_text("region")
            shot(page, shots, "deployment-manual")
            page.click("button.accept")
            expect(page.locator("#confirm-text")).to_contain_text("Accept the bid")
            expect(page.locator("#confirm-text")).to_contain_text("0.030000 act/h")
            page.click("#confirm-ok")
            expect(page.locator("td", has_text="won: you accepted it")).to_have_count(1)
            expect(page.locator("#h-leases + .scroll")).to_contain_text("0.030000 act")
            with TenantClient(stack.address, key) as client:
                assert client.get_deployment(dep.id).lease_ids
                client.close_deployment(dep.id)
    finally:
        bidder.close()


# --- validation as you type ----------------------------------------------------------------


def test_a_bad_manifest_shows_its_error_at_its_line(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    with running_console(stack.address, tenant(stack)) as console:
        page = new_page(browser)
        page.goto(console.url + "/#/tenant")
        lines = INFERENCE.splitlines()
        count_line = next(i for i, x in enumerate(lines, 1) if x.strip() == "count: 1")
        lines[count_line - 1] = lines[count_line - 1].replace("count: 1", "count: many")
        bad = ("\n".join(lines) + "\n").encode()
        page.set_input_files(
            "#sdl-file", {"name": "bad.yaml", "mimeType": "text/yaml", "buffer": bad}
        )
        expect(page.locator("#sdl")).to_have_value(bad.decode())  # the upload fills the editor
        problem = page.locator("#sdl-problems li")
        expect(problem).to_have_count(1)
        expect(problem).to_have_text(re.compile(rf"^sdl:{count_line}: deployment\.model-server"))
        marked = page.locator("#sdl-gutter span.bad")
        expect(marked).to_have_count(1)
        expect(marked).to_have_attribute("data-line", str(count_line))
        expect(page.locator("#deploy")).to_be_disabled()
        page.click(f"text=go to line {count_line}")  # selects that line in the editor
        selected = page.evaluate(
            "() => { const a = document.getElementById('sdl');"
            " return a.value.slice(a.selectionStart, a.selectionEnd); }"
        )
        assert selected == lines[count_line - 1]
        shot(page, shots, "tenant-bad-sdl")
        page.fill("#sdl", INFERENCE)  # fixed: the mark goes, the button comes back
        expect(page.locator("#sdl-gutter span.bad")).to_have_count(0)
        expect(page.locator("#deploy")).to_be_enabled()


# --- privacy ------------------------------------------------------------------------------


def test_another_tenants_deployment_is_not_visible(stack: Stack, browser: Browser) -> None:
    with TenantClient(stack.address, tenant(stack)) as other:
        theirs = other.create_deployment(INFERENCE.encode(), 1_000_000).id
    with running_console(stack.address, tenant(stack)) as console:
        page = new_page(browser)
        page.goto(console.url + "/#/tenant")
        expect(page.locator("#h-deps")).to_be_visible()
        expect(page.locator(f"a[href='#/deployment/{theirs}']")).to_have_count(0)
        page.goto(console.url + f"/#/deployment/{theirs}")
        expect(page.locator("[role=alert]")).to_have_text(f"deployment {theirs} not found")


# --- the market, live ---------------------------------------------------------------------


def test_the_market_view_is_live(stack: Stack, browser: Browser, shots: Path) -> None:
    with running_console(stack.address, tenant(stack), refresh_s=0.3) as console:
        page = new_page(browser)
        page.goto(console.url + "/")
        online = page.locator("#m-online")
        expect(online).to_have_text(str(len(PROVIDERS)))
        expect(page.locator("#h-models + .scroll")).to_contain_text("h100")
        newcomer = registered_provider(stack.address, "newcomer", region="ap-south")
        try:
            expect(online).to_have_text(str(len(PROVIDERS) + 1))  # no reload: the feed
            expect(page.locator("#h-regions + .scroll")).to_contain_text("ap-south")
            shot(page, shots, "market")
            phone = new_page(browser, 390, 844)
            phone.goto(console.url + "/")
            expect(phone.locator("#m-online")).to_have_text(str(len(PROVIDERS) + 1))
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the phone layout scrolls sideways ({width} px)"
            shot(phone, shots, "market-phone")
        finally:
            newcomer.close()
        assert js_errors(page) == []


# --- the provider's own view --------------------------------------------------------------


def test_the_provider_view_shows_its_gpus(stack: Stack, browser: Browser, shots: Path) -> None:
    provider_key = stack.providers["h100"].key
    with running_console(stack.address, provider_key) as console:
        page = new_page(browser)
        page.goto(console.url + "/#/provider")
        gpus = page.locator("#h-gpus ~ .scroll tbody tr")
        expect(gpus.first).to_contain_text("h100")
        expect(gpus.first).to_contain_text("healthy")
        expect(page.locator("main")).to_contain_text("earned")
        shot(page, shots, "provider")
    with running_console(stack.address, tenant(stack)) as console:
        page = new_page(browser)
        page.goto(console.url + "/#/provider")
        expect(page.locator("#view")).to_contain_text("not a provider's")


def test_the_provider_view_shows_live_telemetry_and_declines_by_kind(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    """A real agent on the replayed H100 under load (its NVML series: temperature, power,
    utilization) reports with its heartbeats; it declines an order for two H100s; its console
    shows both, live; another provider's telemetry is refused."""
    load = stack.add_provider("h100-load", EXAMPLES / PROVIDERS["h100"], gpu={"replay_load": True})
    stack.start_provider("h100-load")
    try:
        stack.wait_providers_online(["h100-load"])
        temps = {str(s["temp_c"]) for s in json.loads(UNDER_LOAD.read_text())["samples"]}
        with running_console(stack.address, load.key) as console:
            page = new_page(browser)
            page.goto(console.url + "/#/provider")
            temperature = page.locator('.temp[data-gpu="0"]')
            expect(temperature).to_have_text(re.compile(r"^\d+$"))
            assert temperature.inner_text() in temps
            with TenantClient(stack.address, tenant(stack)) as client:  # two H100s: no box has
                two = gpu_sdl("60s").replace(b"  units: 1", b"  units: 2")
                two = two.replace(b"{region: eu}", b"{region: eu-west}")
                client.create_deployment(two, DEPOSIT, force=True)
            gpu_declines = page.locator('.count[data-kind="gpu"]')  # live: no reload
            expect(gpu_declines).to_have_text(re.compile(r"^[1-9]\d*$"))
            expect(page.locator("#h-declines ~ .scroll")).to_contain_text("needs 2×")
            shot(page, shots, "provider-telemetry")
            other = stack.providers["h100"].key.address
            page.goto(console.url + f"/#/provider/{other}")
            expect(page.locator("#view [role=alert]")).to_contain_text(
                "readable by that provider only"
            )
            assert js_errors(page) == []
    finally:
        stack.kill_provider("h100-load")


# --- simulation reports -------------------------------------------------------------------


def test_reports_show_a_run_and_compare_two(
    stack: Stack, browser: Browser, shots: Path, reports: Path
) -> None:
    with running_console(stack.address, tenant(stack), reports=reports) as console:
        page = new_page(browser)
        page.goto(console.url + "/#/reports")
        expect(page.locator("#view a")).to_have_count(2)
        shot(page, shots, "reports")
        page.click("text=small-seed1")
        expect(
            page.locator("td", has_text="clearing_price_per_gpu_hour.h100.p50")
        ).not_to_have_count(0)
        img = page.locator("img[alt^='clearing price']")
        expect(img).to_have_count(1)
        img.scroll_into_view_if_needed()  # lazy images load once in view
        page.wait_for_function(  # the PNG really loaded and decoded
            "() => [...document.images].some(i => i.alt.startsWith('clearing price')"
            " && i.complete && i.naturalWidth > 0)"
        )
        shot(page, shots, "report")
        page.goto(console.url + "/#/reports")
        page.select_option("#run-b", "small-seed2")
        page.click("#compare")
        expect(page.locator("h1")).to_have_text("small-seed1 vs small-seed2")
        expect(page.locator("th", has_text="B − A")).to_have_count(1)
        expect(page.locator(".compare img")).not_to_have_count(0)
        shot(page, shots, "compare")


# --- accessibility ------------------------------------------------------------------------

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 80))"""

COLOURS = """() => {
  const out = [];
  const bg = (el) => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && !c.endsWith(', 0)') && c !== 'transparent') return c;
    }
    return 'rgb(255, 255, 255)';
  };
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') || el.disabled || !el.offsetParent && el.tagName !== 'BODY') continue;
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text) continue;
    out.push([getComputedStyle(el).color, bg(el), text.slice(0, 30)]);
  }
  return out;
}"""

FOCUSABLE = """() => [...document.querySelectorAll(
    'a[href], button:not([disabled]), input:not([disabled]), select, textarea, [tabindex="0"]')]
  .filter(el => el.offsetParent !== null && !el.closest('dialog:not([open])'))
  .map(el => el.id || el.getAttribute('href') || el.textContent.trim().slice(0, 30))"""


def rgb(text: str) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", text)[:3])
    return r, g, b


def luminance(colour: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((luminance(rgb(fg)), luminance(rgb(bg))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def tab_through(page: Page, presses: int) -> set[str]:
    reached = set()
    page.locator("body").focus()
    for _ in range(presses):
        page.keyboard.press("Tab")
        reached.add(
            page.evaluate(
                "() => { const el = document.activeElement; return el.id || el.getAttribute('href')"
                " || el.textContent.trim().slice(0, 30); }"
            )
        )
    return reached


def check_accessibility(page: Page) -> None:
    assert page.evaluate(UNLABELLED) == [], "inputs without a label"
    colours = page.evaluate(COLOURS)
    assert len(colours) >= 9, "the contrast check found too little text"  # header, h1, text
    low = [
        (text, fg, bg, round(contrast(fg, bg), 2))
        for fg, bg, text in colours
        if contrast(fg, bg) < 4.5
    ]
    assert low == [], f"text under 4.5:1 contrast: {low}"
    focusable = set(page.evaluate(FOCUSABLE))
    assert len(focusable) >= 4, "the keyboard check found too few controls"  # nav links at least
    missing = focusable - tab_through(page, len(focusable) + 5)
    assert not missing, f"not reachable with Tab: {missing}"


def test_every_view_has_labels_contrast_and_keyboard_reach(
    stack: Stack, browser: Browser, reports: Path
) -> None:
    key = tenant(stack)
    with TenantClient(stack.address, key) as client:
        dep = client.create_deployment(INFERENCE.encode(), DEPOSIT).id
    with running_console(stack.address, key, reports=reports) as console:
        page = new_page(browser)
        for view, ready in [
            ("#/market", "#m-online"),
            ("#/tenant", "#h-deps"),
            (f"#/deployment/{dep}", "#h-leases"),
            ("#/provider", "#view p"),
            ("#/reports", "#compare"),
            ("#/reports/small-seed1", "img"),
        ]:
            page.goto(console.url + "/" + view)
            expect(page.locator(ready).first).to_be_visible()
            check_accessibility(page)
        with TenantClient(stack.address, key) as client:
            client.close_deployment(dep)


def test_assets_are_served_from_the_package_with_no_outside_reference(stack: Stack) -> None:
    with running_console(stack.address, tenant(stack)) as console:
        for name in ("", "static/app.js", "static/app.css"):
            with urllib.request.urlopen(f"{console.url}/{name}", timeout=10) as answer:
                text = answer.read().decode()
            assert not re.search(r"(src|href)=\"https?:|url\(https?:|import .* from \"http", text)
