"""Open a page in headless Chromium (Debian's chromium, driven by Playwright) the way a reader would: what the
browser tests check, and how docs/reports.md's screenshot of results/glue-cpu/report.html was taken:

    .venv/bin/python -m tests.browser results/glue-cpu/report.html results/glue-cpu/report.png
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(page_path: Path, screenshot: Path) -> dict:
    """Load the page headless; return its images' decode state, table row counts and console errors."""
    if CHROMIUM is None:
        pytest.skip("no chromium here: .ci/run installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 2400})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: errors.append(f"network request {r.url}")
                    if not r.url.startswith(("file:", "data:")) else None)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
            rows = page.evaluate("Object.fromEntries([...document.querySelectorAll('table[id]')].map(t => "
                                 "[t.id, t.querySelectorAll('tbody tr').length || t.querySelectorAll('tr').length - 1]))")
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    return {"images": images, "rows": rows, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(open_in_chromium(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))
