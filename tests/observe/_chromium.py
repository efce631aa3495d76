"""Open a page in headless Chromium: its DOM, a screenshot and its console messages."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_CONSOLE = re.compile(r":CONSOLE[:(][^\]]*\] (.*)$", re.MULTILINE)


@dataclasses.dataclass
class Page:
    """What Chromium made of a page."""

    dom: str
    console: list[str]


def _run(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        # any fetch off the page fails loudly (and shows in the console)
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def load(page: Path, tmp: Path) -> Page:
    """The rendered DOM and every console message of `page`."""
    proc = _run(page, tmp, "--dump-dom")
    return Page(proc.stdout, _CONSOLE.findall(proc.stderr))


def screenshot(page: Path, tmp: Path, png: Path, size: tuple[int, int] = (1280, 3400)) -> None:
    """A PNG of the page at the given window size."""
    _run(
        page,
        tmp,
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={png.resolve()}",
    )
