"""The userspace shaping engine: NFQUEUE in a hub namespace, each packet held until due.

For kernels without sch_netem. See docs/userspace-engine.md for the design.
"""

from netem._userspace._build import BuildError, build_engine
from netem._userspace._engine import Distribution, Engine, EngineError, Implementation
from netem._userspace._protocol import Timing

__all__ = [
    "BuildError",
    "Distribution",
    "Engine",
    "EngineError",
    "Implementation",
    "Timing",
    "build_engine",
]
