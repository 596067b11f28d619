"""Open a groksweep report in headless Chromium (Debian's) and check it as a reader would see it.

Fails if the page logs an error, tries to fetch anything, has fewer figures
than it says it has (or fewer than expected), draws a figure with no size, or
renders to a blank screenshot.

usage: check_report.py REPORT.html SCREENSHOT.png MIN_FIGURES
"""
import pathlib
import sys

from PIL import Image
from playwright.sync_api import sync_playwright

report, screenshot, min_figures = pathlib.Path(sys.argv[1]).resolve(), sys.argv[2], int(sys.argv[3])
problems = []

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.on("console", lambda message: message.type == "error" and problems.append(f"console error: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("request", lambda request: request.url.startswith("file:") or problems.append(f"fetched {request.url}"))
    page.goto(report.as_uri(), wait_until="load")
    stated = int(page.get_attribute('meta[name="groksweep-figures"]', "content"))
    figures = page.locator("figure.figure")
    count = figures.count()
    if count != stated:
        problems.append(f"the page says {stated} figures, it has {count}")
    if count < min_figures:
        problems.append(f"{count} figures, expected at least {min_figures}")
    for index in range(count):
        figure = figures.nth(index)
        box = figure.locator("svg").bounding_box()
        if box is None or box["width"] < 100 or box["height"] < 100:
            problems.append(f"figure {figure.get_attribute('id')} is not drawn ({box})")
        if figure.locator("svg path, svg polyline, svg rect, svg circle").count() < 3:
            problems.append(f"figure {figure.get_attribute('id')} has nothing in it")
    page.screenshot(path=screenshot, full_page=False)
    browser.close()

image = Image.open(screenshot).convert("L")
low, high = image.getextrema()
inked = sum(image.histogram()[:200]) / (image.width * image.height)
if high - low < 50 or inked < 0.02:
    problems.append(f"the screenshot is blank (grey levels {low}..{high}, {inked:.1%} inked)")

if problems:
    print("report check failed:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"report check: {count} figures drawn, screenshot {image.width}x{image.height} with {inked:.0%} inked: 1 passed, 0 failed")
