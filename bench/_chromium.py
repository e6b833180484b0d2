"""Debian's headless Chromium driven by selenium, for the report screenshots and the browser tests.

A fresh profile per browser and every background service off, so the browser reaches no host: pages
here are local files or a gateway on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def _which(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def missing() -> str | None:
    """Why no headless browser can run here (None when Chromium, its driver and selenium are all there)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if _which(CHROMIUM) is None:
        return "chromium is not installed (Debian: apt-get install chromium chromium-driver)"
    if _which(DRIVER) is None:
        return "chromedriver is not installed (Debian: apt-get install chromium-driver)"
    return None


@contextmanager
def browser(width: int = 1200, height: int = 900, log_requests: bool = False) -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver) with a fresh, temporary profile; quit on exit.

    ``log_requests`` keeps every request the browser makes and its console (``driver.get_log("performance")``
    and ``get_log("browser")``), for tests that check a page reaches no other host.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="sizewise-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(_which(CHROMIUM))
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        if log_requests:
            options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(_which(DRIVER))))
        try:
            driver.set_page_load_timeout(60)
            yield driver
        finally:
            driver.quit()


def open_page(driver: Any, path: Path, charts: int = 1, timeout: float = 30.0) -> None:
    """Load a local HTML file and wait until ``charts`` Plotly charts are drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, timeout).until(
        lambda d: (
            d.execute_script(
                "return Array.from(document.querySelectorAll('.plotly-graph-div')).filter(g => g._fullLayout).length"
            )
            >= charts
        )
    )


#: JavaScript returning every chart's traces as plain JSON: {div id: [{name, x, y, text, customdata}, ...]}.
CHART_DATA = """
const out = {};
for (const g of document.querySelectorAll('.plotly-graph-div')) {
  out[g.id] = g.data.map(t => ({
    name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []), text: t.text === undefined ? null : t.text,
    customdata: t.customdata ? Array.from(t.customdata) : null}));
}
return out;
"""

#: JavaScript returning every resource the page fetched after loading (an offline page fetches none).
RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name);"
