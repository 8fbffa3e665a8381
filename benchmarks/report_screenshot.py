"""Full-page screenshot of a result folder's report.html in headless Chromium (docs/report.png).

    python benchmarks/report_screenshot.py RESULT_DIR docs/report.png [--width 1300] [--height H]

Without ``--height`` the whole page is captured; with it, the top ``H`` pixels.

Needs /usr/bin/chromium, chromedriver and selenium (the ``dev`` extra). Prints the number of SVG
plots per section and any console error.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=None, help="capture only the top H px")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={args.width},1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get((args.folder / "report.html").resolve().as_uri())
        counts = driver.execute_script(
            "return Array.from(document.querySelectorAll('section')).map("
            "s => [s.id, s.querySelectorAll('svg').length]);"
        )
        print("SVG plots per section:", dict(counts))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        print("console errors:", errors or "none")
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        height = min(height + 100, 16000) if args.height is None else args.height
        driver.set_window_size(args.width, height)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.png))
        print(f"wrote {args.png} ({args.width} x {height})")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
