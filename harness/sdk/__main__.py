"""`python -m harness.sdk module:function [trio|asyncio|uvloop]`: run one Python instance."""

import sys

from harness._runparams import RunEnvError
from harness.sdk._invoke import load_entrypoint, run_instance

_USAGE = "usage: python -m harness.sdk package.module:function [trio|asyncio|uvloop]"

if len(sys.argv) not in (2, 3):
    print(_USAGE, file=sys.stderr)
    sys.exit(2)
backend = sys.argv[2] if len(sys.argv) > 2 else "trio"
if backend not in ("trio", "asyncio", "uvloop"):
    print(f"harness.sdk: unknown backend {backend!r}; {_USAGE}", file=sys.stderr)
    sys.exit(2)
try:
    fn = load_entrypoint(sys.argv[1])
except (RunEnvError, ImportError) as e:  # one line, as every other start-up problem
    print(f"harness.sdk: cannot load {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(2)
sys.exit(run_instance(fn, backend))
