"""The page in a real browser: Playwright driving Debian's Chromium (no download).

Skipped only when /usr/bin/chromium or playwright is missing outside CI; under
``CI=true`` a missing browser is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pytest
from pycocotools import mask as mask_utils

pytest_plugins = ["serve_helpers"]
EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TEXTS = ["the big yellow rhombus", "the purple circle"]


def browser_or_skip():
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
        sync_playwright = None
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must install it (.ci/run -> scripts/setup.sh)")
        pytest.skip(reason)
    return sync_playwright


def test_page_uploads_segments_and_draws_the_api_masks(server, tmp_path):
    sync_playwright = browser_or_skip()
    image = EXAMPLES / "scene-2.jpg"
    reply = httpx.post(
        f"{server}/v1/segment",
        files={"image": (image.name, image.read_bytes())},
        data={"text": TEXTS},
    )
    expected = [
        mask_utils.decode({"size": r["rle"]["size"], "counts": r["rle"]["counts"].encode()})
        for r in reply.json()["results"]
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            outside: list[str] = []
            page.on(
                "request",
                lambda req: None if req.url.startswith(server) else outside.append(req.url),
            )
            page.goto(f"{server}/")
            page.wait_for_function("document.querySelectorAll('#example option').length > 1")
            page.set_input_files("#upload", str(image))
            page.wait_for_function("document.getElementById('image-canvas').width > 1")
            page.fill("#texts", "\n".join(TEXTS))
            page.click("#segment")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            drawn = page.evaluate(
                """() => [...document.querySelectorAll('canvas.mask-layer')].map((c) => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    const alpha = [];
                    for (let i = 3; i < d.length; i += 4) alpha.push(d[i] > 0 ? 1 : 0);
                    return {text: c.dataset.text, w: c.width, h: c.height, alpha};
                })"""
            )
            legend = page.locator("#legend li .text").all_inner_texts()
            screenshot = tmp_path / "serve_page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            # toggling hides the first mask
            page.locator("#legend li .toggle").first.uncheck()
            assert "hidden" in page.locator("canvas.mask-layer").first.get_attribute("class")
            href = page.locator("#legend li a.download").first.get_attribute("href")
            assert href.startswith("data:image/png;base64,")
            page.fill("#texts", "\n".join(["a", "b", "c", "d", "e"]))  # the server allows 4
            page.click("#segment")
            status = page.locator("#status")
            assert "At most 4 expressions" in status.inner_text()
            assert status.get_attribute("class") == "error"
        finally:
            browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / screenshot.name)
    assert not errors, errors
    assert not outside, outside  # nothing fetched from anywhere but this server
    assert [d["text"] for d in drawn] == TEXTS
    assert len(legend) == 2 and all(t in line for t, line in zip(TEXTS, legend, strict=True))
    for canvas, mask in zip(drawn, expected, strict=True):
        assert (canvas["h"], canvas["w"]) == mask.shape
        np.testing.assert_array_equal(np.array(canvas["alpha"]).reshape(mask.shape), mask)
        assert mask.sum() > 100


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


MASKS_AND_LEGEND = """() => [document.getElementById('image-canvas').width,
    document.querySelectorAll('canvas.mask-layer').length,
    document.querySelectorAll('#legend li').length]"""


def test_page_shows_unknown_words_and_clears_after_failures(server, tmp_path):
    sync_playwright = browser_or_skip()
    not_an_image = tmp_path / "broken.png"
    not_an_image.write_bytes(b"this is not a picture")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{server}/")
            page.set_input_files("#upload", str(EXAMPLES / "scene-1.jpg"))
            page.wait_for_function("document.getElementById('image-canvas').width > 1")
            page.fill("#texts", "the big zebra circle\nthe big blue disc")
            page.click("#segment")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            legend = page.locator("#legend li .text").all_inner_texts()
            assert "unknown to the model: zebra" in legend[0]
            assert "unknown" not in legend[1]
            width, layers, items = page.evaluate(MASKS_AND_LEGEND)
            assert width > 1 and layers == 2 and items == 2
            # a request the server refuses (text over --max-text-chars 60): masks go, image stays
            page.fill("#texts", "x" * 61)
            page.click("#segment")
            page.wait_for_selector("body[data-state=error]")
            assert page.evaluate(MASKS_AND_LEGEND)[1:] == [0, 0]
            assert page.evaluate(MASKS_AND_LEGEND)[0] > 1
            # segment again, then a file that cannot be displayed: nothing of before stays
            page.fill("#texts", "the big blue disc")
            page.click("#segment")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            page.set_input_files("#upload", str(not_an_image))
            page.wait_for_selector("body[data-state=error]")
            assert page.evaluate(MASKS_AND_LEGEND) == [1, 0, 0]
            assert "Cannot display" in page.locator("#status").inner_text()
            page.click("#segment")
            assert "Choose an example or upload" in page.locator("#status").inner_text()
        finally:
            browser.close()


def test_page_asks_for_the_api_key(tmp_path):
    from serve_helpers import running_server  # the plugin, registered by now

    sync_playwright = browser_or_skip()
    key = "browser-test-key-123456"
    with (
        running_server(log_dir=tmp_path, env={"LAVT_API_KEY": key}) as url,
        sync_playwright() as playwright,
    ):
        assert httpx.get(f"{url}/v1/model").status_code == 401
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{url}/")
            page.wait_for_selector("#auth:not([hidden])")
            page.fill("#api-key", key)
            page.click("#api-key-save")
            page.wait_for_function(
                "document.getElementById('model-line').textContent.startsWith('model lavt')"
            )
            assert page.evaluate("sessionStorage.getItem('lavt-api-key')") == key
            page.set_input_files("#upload", str(EXAMPLES / "scene-2.jpg"))
            page.wait_for_function("document.getElementById('image-canvas').width > 1")
            page.fill("#texts", TEXTS[0])
            page.click("#segment")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            assert page.locator("canvas.mask-layer").count() == 1
        finally:
            browser.close()
    logs = "".join(p.read_text() for p in tmp_path.glob("server-*.log"))
    assert "serving lavt_synthetic" in logs and key not in logs
