"""The screenshots of ``archlab explain`` pages in this folder, taken in headless Chromium.

    python docs/explain/screenshots.py PAGE.html:SECTION[,SECTION2]:OUT.png ...

Each argument names a page, the sections to show (one under the other, each at most 700 pixels
tall) and the PNG to write (256 colours). How the pages were made, on runs
trained with ``archlab train`` on the bundled data, is in README.md ("Looking inside").
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(specs: list[str]) -> None:
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(profile, executable_path=shutil.which("chromium"),
                                                       headless=True, args=ARGS, viewport={"width": 1200, "height": 900})
        for spec in specs:
            page_file, sections, out = spec.rsplit(":", 2)
            page = browser.new_page()
            page.goto(Path(page_file).resolve().as_uri())
            parts = []
            for sid in sections.split(","):
                box = page.locator(f"section#{sid}").bounding_box()
                clip = {"x": box["x"] - 4, "y": box["y"] - 4, "width": box["width"] + 8,
                        "height": min(box["height"] + 8, 700)}
                parts.append(Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True))).convert("RGB"))
            sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
            y = 0
            for part in parts:
                sheet.paste(part, (0, y))
                y += part.height
            sheet.quantize(256).save(out, optimize=True)
            print(out, Path(out).stat().st_size // 1024, "KB")
            page.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
