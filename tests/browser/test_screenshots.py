"""Screenshots of the event page at desktop and phone widths, kept as test artifacts (MARQUEE_ARTIFACTS_DIR,
default tests/browser/artifacts) and checked not to be blank."""

import base64
import os

from conftest import ROOT
from pagekit import DESKTOP, PHONE, browser, create_event, open_event, web_server  # noqa: F401

ARTIFACTS = os.environ.get("MARQUEE_ARTIFACTS_DIR") or os.path.join(ROOT, "tests", "browser", "artifacts")

# Counts the distinct colours of a PNG (sampled on a grid) with the browser's own decoder.
COLOURS_SCRIPT = """async (dataUrl) => {
  const img = new Image();
  img.src = dataUrl;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  const seen = new Set();
  for (let y = 0; y < img.height; y += 4) for (let x = 0; x < img.width; x += 4) {
    const i = (y * img.width + x) * 4;
    seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return {colours: seen.size, width: img.width, height: img.height};
}"""


def test_event_page_screenshots_are_saved_and_not_blank(web_server, browser):
    event = create_event(web_server.base_url, capacities=(300, 40, 6), name="Screenshot Night")
    os.makedirs(ARTIFACTS, exist_ok=True)
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        ctx = browser.new_context(viewport=viewport)
        try:
            page = open_event(ctx, web_server.base_url, event["id"])
            path = os.path.join(ARTIFACTS, f"event-page-{name}.png")
            png = page.screenshot(path=path, full_page=True)
            assert os.path.getsize(path) == len(png) > 5_000
            stats = page.evaluate(COLOURS_SCRIPT, "data:image/png;base64," + base64.b64encode(png).decode())
            assert stats["width"] == viewport["width"]
            # a blank or failed render is one or two colours; the page has text, badges and buttons
            assert stats["colours"] >= 20, stats
            assert page.locator("h1").inner_text().strip() == "Screenshot Night"
        finally:
            ctx.close()
