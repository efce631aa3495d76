"""A CPU-time profile of an instance: folded stacks sampled on the process's own CPU time.

`harness run --profile-cpu` sets `PROFILE_ENV` for every instance, and the SDK's
`run_instance` starts a `CpuProfiler` writing `cpu-<pid>.folded` into the instance's
outputs. A sample is taken every `interval` seconds of the process's CPU (`ITIMER_PROF`), so
a process waiting for a core is not sampled: on a machine with more runnable processes than
cores, a wall-clock sampler (py-spy) puts a process wherever it was preempted, mostly on its
way out of a system call. The file is in the folded form flame-graph tools read
(`frame;frame;frame COUNT` per line, root first), rewritten about every second of CPU and
at the end.
"""

from __future__ import annotations

import collections
import os
import signal
from pathlib import Path
from types import FrameType

from harness._runparams import PROFILE_ENV

DEFAULT_INTERVAL = 0.005
_WRITE_EVERY = 200  # samples between two rewrites of the file (a second at 5 ms)


class CpuProfiler:
    """Samples the main thread's stack every `interval` seconds of this process's CPU time
    (SIGPROF) and keeps the counts by stack; `write` puts them in `path`."""

    def __init__(self, path: Path, interval: float = DEFAULT_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError(f"a profile's interval must be > 0 s, not {interval!r}")
        self.path = path
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self._samples = 0
        self._names: dict[tuple[object, int], str] = {}  # (code, line) -> its frame's name

    def start(self) -> None:
        """Start sampling (from the main thread: a signal handler is installed)."""
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        """Stop sampling and write the profile."""
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)
        self.write()

    def _sample(self, _signum: int, frame: FrameType | None) -> None:
        names = []
        while frame is not None:
            key = (frame.f_code, frame.f_lineno)
            name = self._names.get(key)
            if name is None:
                code = frame.f_code
                name = self._names[key] = (
                    f"{code.co_name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})"
                )
            names.append(name)
            frame = frame.f_back
        names.reverse()
        self.counts[";".join(names)] += 1
        self._samples += 1
        if self._samples % _WRITE_EVERY == 0:
            self.write()

    def write(self) -> None:
        """Replace the file with the counts so far (a reader never sees half of it)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        # A sample may come (a nested signal handler) while the text is built: it works on
        # a copy, which `dict` makes in C, between two samples.
        counts = dict(self.counts)
        tmp.write_text("".join(f"{stack} {n}\n" for stack, n in counts.items()))
        tmp.replace(self.path)


def profiler_from_environ(outputs: Path) -> CpuProfiler | None:
    """The profiler `PROFILE_ENV` asks for, writing into `outputs`; None when unset.
    Raises ValueError for a value that is not a positive number of seconds."""
    value = os.environ.get(PROFILE_ENV)
    if not value:
        return None
    try:
        interval = float(value)
    except ValueError:
        raise ValueError(f"{PROFILE_ENV}={value!r} is not a number of seconds") from None
    return CpuProfiler(outputs / f"cpu-{os.getpid()}.folded", interval)
