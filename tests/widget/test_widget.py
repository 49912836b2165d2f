"""The widget page in a real headless Chromium (Debian's), driven by Selenium, against a live server.

Screenshots go to bench-results/widget/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.server import create_app
from app.settings import Settings
from tests.clients.live_server import LiveServer, free_port, live_server
from tests.conftest import require_tool

pytestmark = pytest.mark.browser

API_KEY = "widget-test-key"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "bench-results" / "widget"
PHONE = (390, 1100)
DESKTOP = (1280, 900)
WAIT_S = 30
MLM = "tiny-distilbert-mlm"  # the session fixture's model id
ENCODER = "tiny-bert-encoder"
SENTIMENT, NER = "tiny-distilbert-sentiment", "tiny-bert-ner"  # tiny_classifier_dir's model ids
VISIBLE_CONTROLS = ", ".join(f"main .card:not([hidden]) {kind}" for kind in ("select", "input", "textarea"))


@pytest.fixture(scope="module")
def server(tiny_mlm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tiny_mlm_model_dir, tmp_path_factory.mktemp("server"), {"DISTILSERVE_API_KEY": API_KEY}) as live:
        yield live


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """create_app under a real uvicorn on a free port, in a thread of this process; yields its URL once ready."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while not (server.started and httpx.get(url + "/ready").status_code == 200):
            assert thread.is_alive() and time.monotonic() < deadline, "server did not get ready"
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


@pytest.fixture(scope="module")
def tiny_encoder_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain BertModel (no MLM head, so embeddings only), exported through the real pipeline."""
    from model_export.pipeline import ExportOptions, export_model
    from tests.tiny_models import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-bert-encoder", "bert-encoder", seed=1)
    out = tmp_path_factory.mktemp("export") / "tiny-bert-encoder"
    export_model(str(checkpoint), out, ExportOptions(variants=("fp32",), model_id=ENCODER))
    return out


def settings_for(*model_dirs: Path) -> Settings:
    return Settings(model_dir=list(model_dirs), providers=["cpu"], intra_op_threads=1, api_key=API_KEY)


@pytest.fixture(scope="module")
def two_models(tiny_mlm_model_dir: Path, tiny_encoder_model_dir: Path) -> Iterator[str]:
    """The MLM first (fill-mask and embed, the default for both), then the encoder (embed only)."""
    with serving(settings_for(tiny_mlm_model_dir, tiny_encoder_model_dir)) as url:
        yield url


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


def choose_model(driver, prefix: str, model_id: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", f"{prefix}-model")).select_by_value(model_id)


def compute(driver, prefix: str) -> list[object]:  # type: ignore[no-untyped-def]
    """Click the card's Compute and wait for its bars (after the previous ones are gone)."""
    from selenium.webdriver.common.by import By

    driver.execute_script(f"document.getElementById('{prefix}-results').replaceChildren()")
    driver.find_element(By.ID, f"{prefix}-submit").click()
    rows = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{prefix}-results .bar-row") or False)
    return rows  # type: ignore[return-value]


def shown_scores(rows: list[object]) -> list[float]:
    from selenium.webdriver.common.by import By

    return [float(row.find_element(By.CLASS_NAME, "bar-score").text) for row in rows]  # type: ignore[attr-defined]


def screenshot(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT_DIR / name))


def fits_the_phone(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    """Nothing wider than the screen (no sideways scrolling), then a screenshot of the whole page."""
    overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(PHONE[0], max(PHONE[1], height + 140))
    screenshot(driver, name)


def requests_served(url: str, route: str, model: str) -> float:
    """distilserve_requests_total for one route and model with status 200, from the server's /metrics."""
    wanted = {"route": route, "status": "200", "model": model}
    for labels, value in re.findall(r"^distilserve_requests_total\{(.*)\} (\S+)$", httpx.get(url + "/metrics").text, re.M):
        if dict(re.findall(r'(\w+)="([^"]*)"', labels)) == wanted:
            return float(value)
    return 0.0


def similarities(url: str, model: str, source: str, sentences: list[str]) -> list[float]:
    """What the similarity card should show for `model`, from /embed directly."""
    response = httpx.post(
        url + "/embed",
        json={"inputs": [source, *sentences], "normalize": True, "model": model},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    response.raise_for_status()
    first, *others = response.json()
    return [sum(a * b for a, b in zip(first, other, strict=True)) for other in others]


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
    for card in ("classify-card", "tokens-card"):  # no classifier here: no card for one
        assert not browser.find_element(By.ID, card).is_displayed()
    screenshot(browser, "desktop.png")


def test_phone_viewport_fits_and_works(browser, server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    load(browser, server.url, PHONE)
    compute(browser, "fill-mask")
    compute(browser, "similarity")
    fits_the_phone(browser, "phone.png")


def test_without_key_the_error_points_to_the_key_field(browser, server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    browser.set_window_size(*DESKTOP)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "fill-mask-submit").click()
    error = wait_for(browser, lambda d: d.find_element(By.ID, "fill-mask-error").text or False)
    assert "API key" in error
    assert browser.find_element(By.ID, "key-box").get_attribute("open") is not None


def test_each_card_lists_the_models_that_serve_its_task(browser, two_models: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    load(browser, two_models, DESKTOP)
    assert browser.find_element(By.ID, "served-models").text == "2 models"
    assert model_options(browser, "fill-mask") == [MLM]
    assert not browser.find_element(By.ID, "fill-mask-model").is_enabled()
    assert model_options(browser, "similarity") == [MLM, ENCODER]
    similarity_model = browser.find_element(By.ID, "similarity-model")
    assert similarity_model.is_enabled()
    assert similarity_model.get_attribute("value") == MLM  # the server's default for embed
    # Every control has a name for screen readers, the sentences added later too.
    browser.find_element(By.ID, "similarity-add").click()
    names = {
        element.get_attribute("id") or element.get_attribute("class"): element.accessible_name
        for element in browser.find_elements(By.CSS_SELECTOR, VISIBLE_CONTROLS)
    }
    assert names == {
        "fill-mask-model": "Model", "fill-mask-input": "Text with the mask token [MASK]", "fill-mask-top-k": "top-k",
        "similarity-model": "Model", "similarity-source": "Source sentence",
        "similarity-sentence": "Sentences to compare to",
    }


def test_the_chosen_model_answers(browser, two_models: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    load(browser, two_models, DESKTOP)
    source = browser.find_element(By.ID, "similarity-source").get_attribute("value")
    sentences = [e.get_attribute("value") for e in browser.find_elements(By.CSS_SELECTOR, ".similarity-sentence")]
    expected = {model: similarities(two_models, model, source, sentences) for model in (MLM, ENCODER)}
    # Two random tiny models: their scores differ, so the bars tell which one answered.
    assert max(abs(a - b) for a, b in zip(expected[MLM], expected[ENCODER], strict=True)) > 0.01

    before = {model: requests_served(two_models, "/embed", model) for model in (MLM, ENCODER)}
    assert shown_scores(compute(browser, "similarity")) == pytest.approx(expected[MLM], abs=1.5e-3)
    choose_model(browser, "similarity", ENCODER)
    assert not browser.find_elements(By.CSS_SELECTOR, "#similarity-results .bar-row")  # old model's bars cleared
    assert shown_scores(compute(browser, "similarity")) == pytest.approx(expected[ENCODER], abs=1.5e-3)
    after = {model: requests_served(two_models, "/embed", model) for model in (MLM, ENCODER)}
    assert after == {MLM: before[MLM] + 1, ENCODER: before[ENCODER] + 1}

    fill_mask_before = requests_served(two_models, "/fill-mask", MLM)
    assert len(compute(browser, "fill-mask")) == 5
    assert requests_served(two_models, "/fill-mask", MLM) == fill_mask_before + 1
    screenshot(browser, "two-models-desktop.png")


def test_two_models_on_a_phone(browser, two_models: str) -> None:  # type: ignore[no-untyped-def]
    load(browser, two_models, PHONE)
    choose_model(browser, "similarity", ENCODER)
    compute(browser, "fill-mask")
    compute(browser, "similarity")
    fits_the_phone(browser, "two-models-phone.png")


def test_a_task_no_model_serves_says_so(browser, tiny_encoder_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    with serving(settings_for(tiny_encoder_model_dir)) as url:
        load(browser, url, DESKTOP)
        assert browser.find_element(By.ID, "served-models").text == ENCODER
        note = browser.find_element(By.ID, "fill-mask-none")
        assert note.is_displayed() and "No served model does fill-mask" in note.text
        for hidden in ("fill-mask-model", "fill-mask-input", "fill-mask-submit"):
            assert not browser.find_element(By.ID, hidden).is_displayed()
        assert not browser.find_element(By.ID, "similarity-none").is_displayed()
        assert model_options(browser, "similarity") == [ENCODER]
        assert len(compute(browser, "similarity")) == 3
        screenshot(browser, "no-fill-mask-model.png")


# Served before the page's own script runs: /info answers `info` and each POST body is kept in
# window.sentBodies (then sent on to the server as usual).
DOCTORED_FETCH = """
const doctoredInfo = %s;
const realFetch = window.fetch.bind(window);
window.sentBodies = [];
window.fetch = (path, init) => {
  if (path === "info") return Promise.resolve(new Response(JSON.stringify(doctoredInfo), {status: 200}));
  if (init && init.body) window.sentBodies.push(JSON.parse(init.body));
  return realFetch(path, init);
};
"""


def test_mask_hint_and_demo_badge_follow_the_chosen_model(browser, two_models: str) -> None:  # type: ignore[no-untyped-def]
    """No tiny model has another mask token, so /info is doctored: the encoder claims fill-mask with
    RoBERTa's <mask> and a demo flag. The server still knows better and says so."""
    from selenium.webdriver.common.by import By

    info = httpx.get(two_models + "/info").json()
    encoder = next(model for model in info["models"] if model["model_id"] == ENCODER)
    encoder.update(tasks=["embed", "fill-mask"], mask_token="<mask>", demo=True)
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": DOCTORED_FETCH % json.dumps(info)})
    try:
        load(browser, two_models, DESKTOP)
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    text = browser.find_element(By.ID, "fill-mask-input")
    badge = browser.find_element(By.ID, "fill-mask-demo")
    assert model_options(browser, "fill-mask") == [MLM, ENCODER]
    assert browser.find_element(By.ID, "mask-token").text == "[MASK]" and not badge.is_displayed()

    choose_model(browser, "fill-mask", ENCODER)
    assert browser.find_element(By.ID, "mask-token").text == "<mask>"
    assert text.get_attribute("value") == "Paris is the <mask> of France."
    assert badge.is_displayed()
    assert not browser.find_element(By.ID, "similarity-demo").is_displayed()  # that card still has the MLM
    screenshot(browser, "demo-badge.png")
    browser.find_element(By.ID, "fill-mask-submit").click()
    error = wait_for(browser, lambda d: d.find_element(By.ID, "fill-mask-error").text or False)
    assert MLM in error  # the server's 422 names the model that has the task
    sent = browser.execute_script("return window.sentBodies")
    assert sent[-1]["model"] == ENCODER and sent[-1]["inputs"] == "Paris is the <mask> of France."

    choose_model(browser, "fill-mask", MLM)
    assert browser.find_element(By.ID, "mask-token").text == "[MASK]"
    assert text.get_attribute("value") == "Paris is the [MASK] of France."
    assert not badge.is_displayed()
    assert not browser.find_element(By.ID, "fill-mask-error").is_displayed()
    assert len(compute(browser, "fill-mask")) == 5
    assert browser.execute_script("return window.sentBodies")[-1]["model"] == MLM


@pytest.fixture(scope="module")
def with_classifiers(tiny_mlm_model_dir: Path, tiny_classifier_dir: Callable[..., Path]) -> Iterator[str]:
    """The MLM, a sentiment classifier and a BERT NER model."""
    dirs = (tiny_mlm_model_dir, tiny_classifier_dir("sentiment"), tiny_classifier_dir("ner", "bert"))
    with serving(settings_for(*dirs)) as url:
        yield url


def answer(url: str, path: str, body: dict[str, object]) -> Any:
    response = httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    response.raise_for_status()
    return response.json()


def labels_and_scores(rows: list[object]) -> tuple[list[str], list[float]]:
    from selenium.webdriver.common.by import By

    labels = [row.find_element(By.CLASS_NAME, "bar-label").text for row in rows]  # type: ignore[attr-defined]
    return labels, shown_scores(rows)


def test_classifier_cards(browser, with_classifiers: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = with_classifiers
    load(browser, url, DESKTOP)
    assert model_options(browser, "classify") == [SENTIMENT]
    assert model_options(browser, "tokens") == [NER]
    names = {element.get_attribute("id"): element.accessible_name for element in browser.find_elements(By.CSS_SELECTOR, VISIBLE_CONTROLS)}
    assert {key: names[key] for key in ("classify-input", "classify-pair", "tokens-input", "tokens-aggregation")} == {
        "classify-input": "Text", "classify-pair": "Second text, for sentence-pair models (optional)",
        "tokens-input": "Text", "tokens-aggregation": "Grouping",
    }

    text = browser.find_element(By.ID, "classify-input").get_attribute("value")
    expected = answer(url, "/classify", {"inputs": text, "model": SENTIMENT, "parameters": {"top_k": None}})
    labels, scores = labels_and_scores(compute(browser, "classify"))
    assert labels == [entry["label"] for entry in expected]
    assert scores == pytest.approx([entry["score"] for entry in expected], abs=5e-4)

    browser.find_element(By.ID, "classify-pair").send_keys("The film was a waste of time.")
    pair = {"text": text, "text_pair": "The film was a waste of time."}
    expected = answer(url, "/classify", {"inputs": pair, "model": SENTIMENT, "parameters": {"top_k": None}})
    labels, scores = labels_and_scores(compute(browser, "classify"))
    assert labels == [entry["label"] for entry in expected]
    assert scores == pytest.approx([entry["score"] for entry in expected], abs=5e-4)

    sentence = browser.find_element(By.ID, "tokens-input").get_attribute("value")
    for strategy in ("simple", "none"):
        Select(browser.find_element(By.ID, "tokens-aggregation")).select_by_value(strategy)
        body = {"inputs": sentence, "model": NER, "parameters": {"aggregation_strategy": strategy}}
        entities = answer(url, "/token-classification", body)
        assert entities, "the tiny NER model labels something in the example sentence"
        labels, _ = labels_and_scores(compute(browser, "tokens"))
        assert labels == [f"{e['word']} · {e.get('entity_group') or e['entity']}" for e in entities]
        # Each mark is the sentence's own span, tagged with its label.
        marks = browser.execute_script(
            "return Array.from(document.querySelectorAll('#tokens-text mark'))"
            ".map((m) => [m.firstChild.textContent, m.querySelector('.entity-tag').textContent])"
        )
        assert marks == [[sentence[e["start"] : e["end"]], e.get("entity_group") or e["entity"]] for e in entities]
    screenshot(browser, "classifiers-desktop.png")


def test_classifier_cards_on_a_phone(browser, with_classifiers: str) -> None:  # type: ignore[no-untyped-def]
    load(browser, with_classifiers, PHONE)
    compute(browser, "classify")
    compute(browser, "tokens")
    fits_the_phone(browser, "classifiers-phone.png")
