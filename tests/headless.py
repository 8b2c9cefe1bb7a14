"""A headless Chromium for the page tests (Selenium with the system's chromedriver).

Outside CI the tests that need it skip, naming what is missing; in CI (``CI=true``)
they fail instead, so a missing browser never passes for a green run.
"""

from __future__ import annotations

import io
import os
import shutil
from contextlib import contextmanager

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def unavailable(reason: str):
    """Skip the test with ``reason``, or fail it when running in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def need_module(name: str):
    """Import ``name`` or skip/fail (see :func:`unavailable`)."""
    try:
        return __import__(name)
    except ImportError:
        unavailable(f"{name} is not installed (pip install -e '.[test,demo]')")


@contextmanager
def chrome(width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver that keeps the browser console log."""
    need_module("selenium")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        unavailable("no Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    except WebDriverException as exc:
        unavailable(f"Chromium did not start: {str(exc).splitlines()[0]}")
    try:
        yield driver
    finally:
        driver.quit()


def severe_logs(driver) -> list[dict]:
    """Console entries of level SEVERE (errors, uncaught exceptions, failed loads)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def picture_stats(png: bytes) -> tuple[float, int]:
    """(pixel standard deviation, number of distinct colours at 5 bits per channel) of a PNG."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    coarse = (rgb >> 3).reshape(-1, 3).astype(np.int32)
    distinct = np.unique(coarse[:, 0] * 1024 + coarse[:, 1] * 32 + coarse[:, 2]).size
    return float(rgb.std()), int(distinct)


def drag(driver, element, dx: int, dy: int, steps: int = 4) -> None:
    """Press at ``element``'s centre, move by ``(dx, dy)`` CSS pixels in ``steps`` and release."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver).move_to_element(element).click_and_hold()
    for _ in range(steps):
        chain = chain.move_by_offset(dx // steps, dy // steps)
    chain.release().perform()


CANVAS_PIXELS = "return Array.from(arguments[0].getContext('2d').getImageData(0, 0, arguments[0].width, " \
                "arguments[0].height).data.filter((_, i) => i % 4 === 0));"


def canvas_pixels(driver, canvas) -> np.ndarray:
    """The red channel of a 2-D canvas as a flat uint8 array."""
    return np.asarray(driver.execute_script(CANVAS_PIXELS, canvas), np.uint8)


def wait_for(driver, condition, timeout: float, what: str):
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda _: condition())
    except TimeoutException:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
