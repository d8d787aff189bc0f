"""Headless Chromium (Debian `chromium`) as a renderer for the HTML report: screenshot plus console messages."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: how Chromium logs a page's console messages and uncaught errors with --enable-logging=stderr
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def render(page: Path, screenshot: Path, profile_dir: Path, size: str = "1200,2600") -> list[str]:
    """Load `page` headless, write a screenshot, return the page's console messages."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars", f"--window-size={size}",
         f"--screenshot={screenshot}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    if not screenshot.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return [m.group(1) for m in map(CONSOLE.search, proc.stderr.splitlines()) if m]
