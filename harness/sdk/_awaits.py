"""Forgotten awaits: a coroutine the test function made and never awaited fails it.

`env.sync.publish(...)` without `await` publishes nothing, and Python only warns (a
RuntimeWarning as the coroutine is finalized), so the instance passed. While it watches,
that warning is an error: raised in the coroutine's finalizer, it reaches
`sys.unraisablehook` with the coroutine itself, whatever the warning filters' "once per
place" would have shown.

Only the plan's own await fails it: a coroutine of the plan's code or the harness's, or one
dropped in the plan's code. One a library made and dropped inside itself is the library's
business (a plan cannot fix it): a warning of the instance, as Python's own would be.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

_UNAWAITED = r"coroutine .* was never awaited"
_HARNESS = Path(__file__).resolve().parents[1]
_log = logging.getLogger("py.warnings")  # where Python's own warning was logged


class ForgottenAwaits:
    """The coroutines finalized without ever being awaited while `watching`; `code` is
    the plan's directory, where the place one was dropped is worth saying."""

    def __init__(self, code: Path | None = None) -> None:
        self.code = code
        self.found: list[str] = []

    @contextlib.contextmanager
    def watching(self) -> Iterator[ForgottenAwaits]:
        """Note every coroutine never awaited, until the block ends."""
        previous = sys.unraisablehook

        def hook(unraisable: Any) -> None:
            if (isinstance(unraisable.exc_value, RuntimeWarning)
                    and inspect.iscoroutine(unraisable.object)):
                # Called from where the coroutine was dropped: for a call whose result is
                # thrown away, the line that forgot its await.
                here = inspect.currentframe()
                self._note(unraisable.object, here.f_back if here is not None else None)
            else:
                previous(unraisable)

        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=_UNAWAITED, category=RuntimeWarning)
            sys.unraisablehook = hook
            try:
                yield self
            finally:
                sys.unraisablehook = previous

    def reason(self) -> str | None:
        """Why the instance fails, if a coroutine was never awaited; within `watching`.
        A collection first: one held in a reference cycle is finalized only by it."""
        gc.collect()
        if not self.found:
            return None
        more = len(self.found) - 1
        return self.found[0] + (f" (and {more} more)" if more else "")

    def _note(self, coro: Any, frame: FrameType | None) -> None:
        name = getattr(coro, "__qualname__", type(coro).__name__)
        what = f"coroutine '{name}' was never awaited (a forgotten `await`)"
        path, line = (None, 0) if frame is None else (Path(frame.f_code.co_filename),
                                                      frame.f_lineno)
        if path is not None and self.code is not None and path.is_relative_to(self.code):
            what += f" at {path.relative_to(self.code)}:{line}"
        elif not self._ours(coro):
            where = f"{path}:{line}" if path is not None else "an unknown place"
            _log.warning(f"coroutine '{name}' was never awaited, made and dropped by a "
                         f"library (at {where}): not the plan's await")
            return
        _log.warning(what)
        self.found.append(what)

    def _ours(self, coro: Any) -> bool:
        """Whether the coroutine's function is the plan's or the harness's (all are, when
        the plan's code is not known)."""
        code = getattr(coro, "cr_code", None)
        if self.code is None or code is None:
            return True
        made = Path(code.co_filename)
        return made.is_relative_to(self.code) or made.is_relative_to(_HARNESS)
