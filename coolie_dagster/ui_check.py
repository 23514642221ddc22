"""Look at the Dagster UI in headless Chromium (Debian's ``chromium`` + ``chromedriver``).

Used by the e2e browser test and to refresh the screenshots in ``docs/``:

    make demo && python -m coolie_dagster.ui_check --port 3000 --out docs/

(with ``make dev`` running). Selenium drives the browser; nothing is downloaded.
"""

import argparse
import time
from pathlib import Path

__all__ = ["CHROMEDRIVER", "CHROMIUM", "capture_pages"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = {
    "asset-groups.png": "/asset-groups",
    "asset-lineage.png": "/assets/gold/daily_revenue?view=lineage&lineageScope=upstream&lineageDepth=4",
}


def capture_pages(
    base_url: str, out_dir: Path, *, pages: dict[str, str] | None = None, settle_s: float = 6.0
) -> dict[str, str]:
    """Open each page, dismiss the first-visit dialog, save a PNG; returns page texts by file name."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1800,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    texts: dict[str, str] = {}
    try:
        for name, path in (pages or PAGES).items():
            driver.get(base_url.rstrip("/") + path)
            time.sleep(settle_s)  # the UI renders asynchronously after load
            for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
                button.click()
                time.sleep(1)
            out_dir.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out_dir / name))
            texts[name] = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    for name in capture_pages(f"http://127.0.0.1:{args.port}", args.out):
        print(args.out / name)


if __name__ == "__main__":
    main()
