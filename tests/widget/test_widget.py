"""The widget page in a real headless Chromium (Debian's), driven by Selenium, against a live server.

Screenshots go to bench-results/widget/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.live_server import LiveServer, live_server
from tests.conftest import require_tool

pytestmark = pytest.mark.browser

API_KEY = "widget-test-key"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "bench-results" / "widget"
PHONE = (390, 1100)
DESKTOP = (1280, 900)
WAIT_S = 30


@pytest.fixture(scope="module")
def server(tiny_mlm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tiny_mlm_model_dir, tmp_path_factory.mktemp("server"), {"DISTILSERVE_API_KEY": API_KEY}) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_tool("chromium")
    driver_path = require_tool("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="distilserve-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile.name}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def wait_for(driver: object, condition: object) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition)


def load(driver, url: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver.set_window_size(*size)
    driver.get(url + "/")
    wait_for(driver, lambda d: "loading" not in d.find_element(By.ID, "served-models").text)
    key_box = driver.find_element(By.ID, "key-box")
    if key_box.get_attribute("open") is None:
        driver.find_element(By.CSS_SELECTOR, "#key-box summary").click()
    driver.find_element(By.ID, "api-key").send_keys(API_KEY)


def model_options(driver, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import Select

    select = Select(driver.find_element("id", f"{prefix}-model"))
    return [option.get_attribute("value") for option in select.options]


def test_page_is_self_contained(server: LiveServer) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("static/widget.js", "static/widget.css"):
        response = httpx.get(f"{server.url}/{asset}")
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text


def test_fill_mask_and_similarity(browser, server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    info = httpx.get(server.url + "/info").json()
    load(browser, server.url, DESKTOP)
    assert browser.find_element(By.ID, "served-models").text == info["model_id"]
    for prefix in ("fill-mask", "similarity"):
        # One model: each card names it, with nothing to choose.
        assert model_options(browser, prefix) == [info["model_id"]]
        assert not browser.find_element(By.ID, f"{prefix}-model").is_enabled()
        assert browser.find_element(By.ID, f"{prefix}-demo").is_displayed() == info["demo"]

    text = browser.find_element(By.ID, "fill-mask-input")
    text.clear()
    text.send_keys("The capital of France is [MASK].")
    browser.find_element(By.ID, "fill-mask-submit").click()
    rows = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#fill-mask-results .bar-row") or False)
    assert len(rows) == 5
    expected = httpx.post(
        server.url + "/fill-mask",
        json={"inputs": "The capital of France is [MASK].", "parameters": {"top_k": 5}},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).json()
    shown = [row.find_element(By.CLASS_NAME, "bar-label").text for row in rows]
    assert shown == [prediction["token_str"] for prediction in expected]
    scores = [float(row.find_element(By.CLASS_NAME, "bar-score").text) for row in rows]
    assert scores == pytest.approx([prediction["score"] for prediction in expected], rel=0.06, abs=5e-4)
    assert browser.find_element(By.ID, "fill-mask-time").text.startswith("Computed in")

    browser.find_element(By.ID, "similarity-submit").click()
    rows = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#similarity-results .bar-row") or False)
    assert len(rows) == 3
    scores = [float(row.find_element(By.CLASS_NAME, "bar-score").text) for row in rows]
    assert all(-1.0 <= score <= 1.0 for score in scores)
    assert browser.find_element(By.ID, "similarity-error").get_attribute("hidden") is not None
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT_DIR / "desktop.png"))


def test_phone_viewport_fits_and_works(browser, server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    load(browser, server.url, PHONE)
    browser.find_element(By.ID, "fill-mask-submit").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#fill-mask-results .bar-row") or False)
    browser.find_element(By.ID, "similarity-submit").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#similarity-results .bar-row") or False)
    # Nothing wider than the screen: no sideways scrolling on a phone.
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(PHONE[0], max(PHONE[1], height + 140))
    browser.save_screenshot(str(SCREENSHOT_DIR / "phone.png"))


def test_without_key_the_error_points_to_the_key_field(browser, server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    browser.set_window_size(*DESKTOP)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "fill-mask-submit").click()
    error = wait_for(browser, lambda d: d.find_element(By.ID, "fill-mask-error").text or False)
    assert "API key" in error
    assert browser.find_element(By.ID, "key-box").get_attribute("open") is not None
