"""Open an HTML file in headless Chromium and report what a reader would see: console errors, images that did
not decode (natural width 0) and the row count of every table with an id."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PROBE = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(img => ({alt: img.alt, width: img.naturalWidth}));
  const tables = {};
  for (const t of document.querySelectorAll("table[id]")) tables[t.id] = t.tBodies[0].rows.length;
  const out = document.createElement("pre");
  out.id = "slimbert-probe";
  out.textContent = JSON.stringify({images, tables});
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise AssertionError("Chromium is needed to check the HTML reports in a real browser: `apt-get install chromium` "
                         "(.ci/run installs it when absent)")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=120)


def inspect_html(path: Path) -> dict:
    """``{"images": [{"alt", "width"}], "tables": {id: rows}, "console_errors": [...]}`` of the page as loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / path.name
        probed.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        proc = _run(["--dump-dom", probed.as_uri()])
    found = re.search(r'<pre id="slimbert-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page did not finish loading in Chromium: {proc.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    # Console messages Chromium logs: errors are "CONSOLE" lines of level ERROR, and failed resource loads.
    result["console_errors"] = [line for line in proc.stderr.splitlines()
                                if ("CONSOLE" in line and ":ERROR:" in line) or "Uncaught" in line
                                or "Failed to load resource" in line]
    return result


def screenshot(path: Path, png: Path, width: int = 1300, height: int = 3000) -> None:
    proc = _run([f"--screenshot={png}", f"--window-size={width},{height}", path.resolve().as_uri()])
    assert png.is_file(), proc.stderr[-2000:]
