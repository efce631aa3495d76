"""The report's stylesheet and script, shipped as report.css and report.js beside this module."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def asset(name: str) -> str:
    """The text of `name` (report.css or report.js), read from the installed package."""
    return resources.files("harness.observe._report").joinpath(name).read_text(encoding="utf-8")
