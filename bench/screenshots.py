"""Screenshots of the interactive reports for the docs, taken in headless Chromium.

Runs the documented commands as a user would (``sizewise eval --report``, ``sizewise calibrate --plot
FILE.html``, ``sizewise choose --out``) on the data in ``$SIZEWISE_DATA`` into a temporary folder, opens
each page in Debian's Chromium (selenium + chromedriver; a fresh profile, background services off) and
writes the PNGs into docs/img/.

Usage: ``python bench/screenshots.py [--only eval calibrate choose]`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._chromium import browser, missing, open_page

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
CLI = [sys.executable, "-m", "sizewise.cli.main"]


def sizewise(*args: str) -> None:
    """One ``sizewise`` command in a subprocess, echoed with its time."""
    start = time.perf_counter()
    print("$ sizewise " + " ".join(args), flush=True)
    subprocess.run([*CLI, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def pages(work: Path, only: set[str]) -> list[tuple[str, Path, int, str | None]]:
    """Build the reports; (name, page, charts on it, element id to capture or None for the window)."""
    out = []
    if "eval" in only:
        sizewise("eval", "--dataset", "routellm-gsm8k", "--router", "random", "--router", "tfidf-logreg",
                 "--router", "oracle", "--report", str(work / "eval"), "--no-progress")  # fmt: skip
        out.append(("eval-report", work / "eval" / "index.html", 2, None))
    if "calibrate" in only:
        sizewise("calibrate", "--router", "tfidf-logreg", "--dataset", "routellm-gsm8k", "--target-quality", "0.95",
                 "--out", str(work / "router.zip"), "--plot", str(work / "calibration.html"))  # fmt: skip
        out.append(("calibrate", work / "calibration.html", 1, "calibration"))
    if "choose" in only:
        sizewise("choose", "--data", "mmlu-pro", "--target", "0.68", "--out", str(work / "choose"))
        out.append(("choose-frontier", work / "choose" / "frontier.html", 1, "frontier"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["eval", "calibrate", "choose"], default=None)
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"error: {reason}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sizewise-shots-") as tmp:
        built = pages(Path(tmp), set(args.only or ["eval", "calibrate", "choose"]))
        from selenium.webdriver.common.by import By

        with browser(1200, 1150) as driver:
            for name, page, count, element in built:
                open_page(driver, page, count)
                target = OUT / f"{name}.png"
                if element is None:
                    driver.save_screenshot(str(target))
                else:  # the whole chart: Chromium clips an element's screenshot to the window
                    chart = driver.find_element(By.ID, element)
                    driver.set_window_size(1200, chart.size["height"] + 400)
                    driver.execute_script("arguments[0].scrollIntoView()", chart)
                    chart.screenshot(str(target))
                    driver.set_window_size(1200, 1150)
                print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
