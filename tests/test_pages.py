"""The pages as a user sees them, in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by scripts/test), driven with Selenium: GraphiQL and the chart
page load every asset from the server itself (the machine has no internet, and the test
checks every URL the browser asked for), search finds a simulator symbol, Sync draws
candles, Watch moves the newest candle as trades arrive, and a closed bar appears.
Screenshots are kept in test-artifacts/ (or $PQ_ARTIFACTS)."""

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import receiving_all, until

ARTIFACTS = Path(os.environ.get("PQ_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


class Browser:
    """A headless Chromium; every call runs in a thread, so the server in this event loop keeps serving."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def get(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def until(self, script: str, within: float = 20.0) -> Any:
        """Poll ``script`` (a JavaScript expression) until it is truthy; return its value."""
        async with asyncio.timeout(within):
            while True:
                value = await self.js(f"return ({script});")
                if value:
                    return value
                await asyncio.sleep(0.1)

    async def click(self, css: str) -> None:
        element = await asyncio.to_thread(self.driver.find_element, By.CSS_SELECTOR, css)
        await asyncio.to_thread(element.click)

    async def type(self, css: str, text: str) -> None:
        element = await asyncio.to_thread(self.driver.find_element, By.CSS_SELECTOR, css)
        await asyncio.to_thread(element.send_keys, text)

    async def screenshot(self, name: str) -> None:
        await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.driver.save_screenshot, str(ARTIFACTS / f"{name}.png"))

    async def requested(self) -> list[str]:
        """Every URL the page asked for since the last call (from the performance log)."""
        entries = await asyncio.to_thread(self.driver.get_log, "performance")
        urls = []
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    async def console_errors(self) -> list[str]:
        entries = await asyncio.to_thread(self.driver.get_log, "browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"]


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.fail("the page tests need Chromium: apt-get install -y chromium chromium-driver (scripts/test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def browser(chromium: webdriver.Chrome) -> AsyncIterator[Browser]:
    page = Browser(chromium)
    yield page
    await page.get("about:blank")
    await page.requested()
    await page.console_errors()


@pytest.fixture
async def site(settings: Settings, resources: Resources) -> AsyncIterator[str]:
    """The API with GraphiQL on, as `pocketquant dev` serves it."""
    async with serve(create_app(settings.model_copy(update={"graphiql": True}), resources)) as url:
        yield url


def _only_from(origin: str, urls: list[str]) -> list[str]:
    """The URLs that did not go to ``origin`` (data: URLs are inline)."""
    return [
        u
        for u in urls
        if not (u.startswith(origin) or u.startswith(origin.replace("http", "ws")) or u.startswith("data:"))
    ]


async def test_graphiql_works_offline(browser: Browser, site: str) -> None:
    await browser.get(site + "/graphql")
    await browser.until("document.querySelector('.graphiql-container')")
    await browser.click(".graphiql-execute-button")
    # The default query searches the (simulated) TradingView for AAPL.
    await browser.until(
        "document.querySelector('.result-window') && document.querySelector('.result-window').textContent.includes('Apple Inc.')"
    )
    await browser.screenshot("graphiql")
    urls = await browser.requested()
    assert any(u.endswith("/static/vendor/graphiql/graphiql.min.js") for u in urls)
    assert _only_from(site, urls) == []
    assert await browser.console_errors() == []


async def test_the_chart_page_searches_syncs_and_moves_with_the_market(
    browser: Browser,
    site: str,
    gql: GraphQLClient,
    admin_key: str,
    worker: Any,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    sim_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    await browser.get(site + "/")
    await browser.until("window.pq && document.getElementById('state').dataset.state === 'idle'")
    # Search finds a simulator symbol.
    await browser.type("#search", "BTC")
    await browser.until("document.querySelector('#results li[data-ticker=\"BINANCE:BTCUSDT\"]')")
    await browser.js("document.getElementById('interval').value = 'MINUTE_1';"
                     "document.getElementById('interval').dispatchEvent(new Event('change'));")  # fmt: skip
    await browser.click('#results li[data-ticker="BINANCE:BTCUSDT"]')
    # Nothing stored yet: the page says so, and what to do.
    assert "press Sync" in await browser.until(
        "document.getElementById('state').dataset.state === 'empty' && document.getElementById('state').textContent"
    )
    # Mutations need a key: saved in the page, sent with every request.
    await browser.click("#key-box summary")
    await browser.type("#api-key", admin_key)
    await browser.click("#save-key")
    await browser.click("#sync")
    bars = await browser.until("window.pq.bars >= 300 && window.pq.bars")
    assert bars == 500  # the newest page
    assert await browser.until("document.querySelector('#chart canvas')")
    # Scrolling to the oldest bar drawn loads the page before it.
    await browser.js("window.pq.chart.timeScale().setVisibleLogicalRange({from: 0, to: 100})")
    bars = await browser.until("window.pq.bars >= 1000 && !window.pq.loading && window.pq.bars")
    assert bars == 1000
    await browser.screenshot("chart-synced")

    # Watch: the newest candle moves with the trades, and a closed bar appears.
    await browser.click("#watch")
    await browser.until("window.pq.connection === 'open'")

    await until(lambda: receiving_all(gql, {"BINANCE:BTCUSDT"}))  # the stream has it: trades now reach the page
    start = int(sim_clock.now)
    closes = []
    for t in range(start + 5, start + 95, 5):
        sim_clock.now = stream_clock.now = t
        await simulator.play(t)
        bar = await browser.until(
            f"window.pq.lastBar && window.pq.lastBar.ticks > 0 && window.pq.lastBar.time <= {t} && window.pq.lastBar"
        )
        closes.append(bar["close"])
        await asyncio.sleep(0.05)
    assert len(set(closes)) > 1, closes  # the last candle changed as trades arrived
    assert await browser.until("window.pq.closedBars >= 1")
    assert await browser.js("return window.pq.bars") >= bars + 1
    await browser.screenshot("chart-live")
    assert _only_from(site, await browser.requested()) == []
    assert await browser.console_errors() == []


def test_vendored_assets_match_their_manifest_and_carry_licences() -> None:
    """scripts/vendor-assets writes them from pinned npm versions; nothing else edits them."""
    import hashlib

    vendor = Path(__file__).parent.parent / "pocketquant" / "api" / "static" / "vendor"
    manifest = json.loads((vendor / "MANIFEST.json").read_text())
    assert set(manifest) == {"react", "react-dom", "graphiql", "graphql-ws", "lightweight-charts"}
    for name, entry in manifest.items():
        files = {p.name for p in (vendor / name).iterdir()}
        assert files == set(entry["files"]), name
        assert "LICENSE" in files, name
        for file, digest in entry["files"].items():
            assert hashlib.sha256((vendor / name / file).read_bytes()).hexdigest() == digest, (name, file)
