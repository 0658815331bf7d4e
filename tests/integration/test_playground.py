"""The playground in a real browser: headless Chromium against a local stack on its default, the toy model.

It uploads two images, submits a keyframe morph from the page's controls, watches the progress bar
move and live previews arrive, plays the video the job made, and submits a bad document to see its
field marked with the rule.
"""

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from vsteer.pictures import png_bytes, smooth_picture
from vsteer.stack import Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FRAMES, FPS, STEPS = 4, 7, 3


@pytest.fixture(scope="module")
def stack(tiny_model_dir: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSTEER_")}
    env["VSTEER_CACHE_DIR"] = str(tiny_model_dir.parent)
    with start_stack(env=env, webhooks=False) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    options.add_argument("--autoplay-policy=no-user-gesture-required")
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout_s: float, what: str) -> Any:
    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(condition, message=f"waiting for {what}")


def set_value(driver: WebDriver, element_id: str, value: object) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(str(value))


def document(driver: WebDriver) -> dict[str, Any]:
    return json.loads(driver.find_element(By.ID, "doc").get_attribute("value") or "{}")


def test_the_playground_runs_a_keyframe_morph_and_marks_a_bad_field(stack: Stack, browser: WebDriver, tmp_path: Path):
    started = time.monotonic()
    # a stored direction of the tenant's, to steer with from the page
    stored = httpx.post(
        f"{stack.url}/v1/directions",
        json={"vector": [1.0, 0.0, 0.0, 0.0], "model": "toy", "space": "latent", "name": "warmer"},
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=30,
    )
    assert stored.status_code == 201, stored.text
    direction_id = stored.json()["id"]
    # 1. the page loads without a key; the root redirects to it
    browser.get(f"{stack.url}/")
    assert browser.current_url == f"{stack.url}/playground"
    browser.find_element(By.ID, "api-key").send_keys(stack.api_key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    assert browser.execute_script("return sessionStorage.getItem('vsteer.apiKey')") == stack.api_key

    # 2. two images through the file input, uploaded as assets and shown as thumbnails
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"key{seed}.png"
        path.write_bytes(png_bytes(smooth_picture(seed, (64, 64))))
        paths.append(str(path))
    browser.find_element(By.ID, "file-input").send_keys("\n".join(paths))
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#assets li img")) == 2, 30, "two thumbnails")
    asset_ids = [li.get_attribute("data-asset-id") for li in browser.find_elements(By.CSS_SELECTOR, "#assets li")]
    # the tenant's uploads are listed too, newest first; those already in the job cannot be added twice
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#library li")) >= 2, 30, "the uploads list")
    library = browser.find_elements(By.CSS_SELECTOR, "#library li")
    assert [li.get_attribute("data-asset-id") for li in library[:2]] == asset_ids[::-1]
    assert all(not li.find_element(By.TAG_NAME, "button").is_enabled() for li in library[:2])

    # 3. the controls write the document
    for element_id, value in (("seed", 42), ("frames", FRAMES), ("fps", FPS), ("width", 64), ("height", 64)):
        set_value(browser, element_id, value)
    set_value(browser, "steps", STEPS)
    # the stored direction, by name, with its strength on a slider and a steps window (it is a latent one)
    wait_until(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#direction-pick option[value="{direction_id}"]'), 30, "it"
    )
    pick = browser.find_element(By.CSS_SELECTOR, f'#direction-pick option[value="{direction_id}"]')
    assert pick.text == "warmer (toy, latent)"
    pick.click()
    browser.find_element(By.ID, "direction-add").click()
    browser.execute_script(
        "for (const [selector, value] of [['[data-field=\"directions[0].strength\"]', '0.5'],"
        "  ['[data-field=\"directions[0].steps\"]', '0.25']]) {"
        "  const input = document.querySelector(selector); input.value = value;"
        "  input.dispatchEvent(new Event('input')); }"
    )
    doc = document(browser)
    assert doc["directions"] == [
        {"source": {"id": direction_id}, "space": "latent", "strength": 0.5, "steps": [0.25, 1]}
    ]
    # a direction from words: a text fit on the default model, stored, picked by its name, added to the job
    set_value(browser, "fit-text", "a bright red circle")
    browser.find_element(By.ID, "fit-text-button").click()
    wait_until(browser, lambda d: len(document(d).get("directions", [])) == 2, 60, "the direction from words")
    words = document(browser)["directions"][1]
    assert (words["space"], words["strength"]) == ("embedding", 1) and words["source"]["id"].startswith("dir_")
    assert "stored and added" in browser.find_element(By.ID, "fit-state").text
    fitted = browser.find_element(By.CSS_SELECTOR, f'#direction-pick option[value="{words["source"]["id"]}"]')
    assert fitted.text == "a bright red circle (toy, embedding)"
    assert doc["keyframes"] == [
        {"image": f"asset:{asset_ids[0]}", "at": 0},
        {"image": f"asset:{asset_ids[1]}", "at": 1},
    ]
    assert doc["seed"] == 42
    gen = doc["generation"]
    assert (gen["num_frames"], gen["fps"], gen["width"], gen["height"], gen["steps"]) == (FRAMES, FPS, 64, 64, STEPS)

    # 4. submit and watch the progress bar: every value it shows is recorded by the page's own DOM
    browser.execute_script(
        "window.seenProgress = [];"
        "new MutationObserver(() => window.seenProgress.push(["
        "  document.getElementById('progress').value, document.getElementById('progress-text').textContent]))"
        ".observe(document.getElementById('progress-box'), {attributes: true, childList: true, subtree: true,"
        "  characterData: true});"
        # and every live preview, with the job's status when it was shown
        "window.seenPreviews = [];"
        "new MutationObserver(() => window.seenPreviews.push(["
        "  document.getElementById('job-state').dataset.status,"
        "  (document.getElementById('live-preview').getAttribute('src') || '').slice(0, 23),"
        "  document.getElementById('live-caption').textContent]))"
        ".observe(document.getElementById('live-box'), {attributes: true, subtree: true, childList: true,"
        "  characterData: true});"
    )
    browser.find_element(By.ID, "submit").click()
    wait_until(
        browser,
        lambda d: (
            d.find_element(By.ID, "job-state").get_attribute("data-status") in ("succeeded", "failed", "canceled")
        ),
        240,
        "the job to finish",
    )
    state = browser.find_element(By.ID, "job-state")
    assert state.get_attribute("data-status") == "succeeded", state.text
    job_id = state.text.split(":")[0]
    seen = browser.execute_script("return window.seenProgress")
    percents = [value for value, _ in seen]
    assert any(0 < p < 100 for p in percents), seen
    assert percents == sorted(percents), f"the progress bar went back: {seen}"
    assert any(text.startswith(f"denoise {step}/{STEPS}") for _, text in seen for step in range(1, STEPS)), seen
    # at least one live preview arrived while the job was running, a JPEG at most 256 pixels wide
    previews = browser.execute_script("return window.seenPreviews")
    assert any(
        status == "running" and src == "data:image/jpeg;base64," and "denoised estimate after step" in caption
        for status, src, caption in previews
    ), previews
    live = browser.find_element(By.ID, "live-preview")
    assert 0 < browser.execute_script("return arguments[0].naturalWidth", live) <= 256

    # 5. the video plays with the job's duration; the poster, manifest and audit chart are shown
    video = browser.find_element(By.ID, "video")
    wait_until(browser, lambda d: d.execute_script("return arguments[0].readyState", video) >= 2, 30, "video data")
    duration = browser.execute_script("return arguments[0].duration", video)
    assert abs(duration - FRAMES / FPS) <= 1 / FPS, duration
    assert f"/{job_id}/video.mp4" in (video.get_attribute("src") or "")
    wait_until(
        browser,
        lambda d: (d.find_element(By.ID, "manifest").get_attribute("textContent") or "").startswith("{"),
        30,
        "the manifest",
    )
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart svg polyline")) == 2, 30, "the chart")
    poster = browser.find_element(By.ID, "poster")
    wait_until(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", poster) == 64, 30, "poster")
    preview = browser.find_element(By.ID, "result-preview")
    wait_until(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", preview) > 0, 30, "preview")
    wait_until(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#history li[data-job-id="{job_id}"]'), 30, "history"
    )

    # 6. the document is what is sent: steps 0 is refused, and the steps control shows the rule
    doc["generation"]["steps"] = 0
    browser.execute_script(
        "const area = document.getElementById('doc'); area.value = arguments[0];"
        "area.dispatchEvent(new Event('input'));",
        json.dumps(doc),
    )
    browser.find_element(By.ID, "submit").click()
    error = wait_until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#errors li[data-field="generation.steps"]'),
        30,
        "the 422's field",
    )[0]
    assert error.find_element(By.CSS_SELECTOR, ".rule").text == "greater_than_equal"
    steps = browser.find_element(By.ID, "steps")
    assert "invalid" in (steps.get_attribute("class") or "").split()
    assert (steps.get_attribute("title") or "").startswith("greater_than_equal:")
    assert browser.find_element(By.ID, "job-state").text.startswith(job_id)  # no new job was made

    screenshot = tmp_path / "playground.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot} (browser part took {time.monotonic() - started:.1f} s)")


def test_the_playground_switches_between_a_sweeps_clips(stack: Stack, browser: WebDriver, tmp_path: Path):
    browser.get(f"{stack.url}/playground")
    browser.find_element(By.ID, "api-key").send_keys(stack.api_key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    image = tmp_path / "one.png"
    image.write_bytes(png_bytes(smooth_picture(3, (64, 64))))
    browser.find_element(By.ID, "file-input").send_keys(str(image))
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#assets li img"), 30, "the thumbnail")
    for element_id, value in (("frames", FRAMES), ("width", 64), ("height", 64), ("steps", 2), ("sweep-count", 3)):
        set_value(browser, element_id, value)
    assert document(browser)["sweep"] == {"target": "seed", "to": 1, "count": 3}
    browser.find_element(By.ID, "submit").click()
    wait_until(
        browser,
        lambda d: d.find_element(By.ID, "job-state").get_attribute("data-status") in ("succeeded", "failed"),
        240,
        "the sweep to finish",
    )
    assert browser.find_element(By.ID, "job-state").get_attribute("data-status") == "succeeded"

    # Every clip is loaded before the slider moves, so switching shows the next one at once.
    ready = "return [...document.querySelectorAll('#clips video')].map(v => v.readyState)"
    wait_until(
        browser, lambda d: (states := d.execute_script(ready)) and min(states) >= 2 and len(states) == 3, 30, "clips"
    )
    shown = "return [...document.querySelectorAll('#clips video')].map(v => !v.hidden)"
    assert browser.execute_script(shown) == [True, False, False]
    browser.execute_script(
        "const s = document.getElementById('clip-slider'); s.value = 2; s.dispatchEvent(new Event('input'));"
    )
    assert browser.execute_script(shown) == [False, False, True]
    assert browser.find_element(By.ID, "clip-index").text == "2"
