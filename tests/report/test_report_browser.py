"""The report of a small real run, opened in headless Chromium (Selenium + chromedriver).

Checks that every plot renders as an SVG element with a non-zero size, counts them per section,
that the page logs no console errors, and saves a full-page screenshot. Skips (with the reason)
only when ``/usr/bin/chromium`` is not installed; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
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

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is not installed (apt-get install -y chromium chromium-driver)",
)

_SVG_SIZES = """
return Array.from(document.querySelectorAll('section')).map(s => ({
  id: s.id,
  svgs: Array.from(s.querySelectorAll('svg')).map(e => {
    const r = e.getBoundingClientRect(); return [r.width, r.height, e.childElementCount];
  })
}));
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (dev)")
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.add_argument("--window-size=1300,1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def full_page_screenshot(driver, path: Path, width: int = 1300) -> None:
    """Resize the window to the page height and save a PNG of the whole page."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(height + 100, 16000))
    driver.save_screenshot(str(path))


def test_report_renders_in_chromium(browser, report_run: Path, tmp_path: Path) -> None:
    browser.get((report_run / "report.html").resolve().as_uri())
    assert browser.title == "debiasrec report: report-test"
    sections = {s["id"]: s["svgs"] for s in browser.execute_script(_SVG_SIZES)}
    expected_min = {"frontier": 4, "groups": 2, "exposure": 2, "calibration": 1}
    for sid, n in expected_min.items():
        assert len(sections[sid]) >= n, (sid, sections[sid])
        for w, h, children in sections[sid]:
            assert w > 100 and h > 100 and children > 3, (sid, w, h, children)
    assert sections["llm-audit"] == []  # "No LLM audit in this run."
    total = sum(len(v) for v in sections.values())
    assert total == sum(len(sections[s]) for s in expected_min)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    shot = tmp_path / "report.png"
    full_page_screenshot(browser, shot)
    assert shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_transparency_details_open(browser, report_run: Path) -> None:
    browser.get((report_run / "report.html").resolve().as_uri())
    first = browser.find_element("css selector", "#transparency details")
    first.find_element("css selector", "summary").click()
    rows = first.find_elements("css selector", "table tr")
    assert len(rows) >= 2 and rows[1].is_displayed()
    assert "because you interacted with" in first.text
