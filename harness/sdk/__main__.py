"""`python -m harness.sdk module:function [trio|asyncio]`: run one Python instance."""

import sys

from harness.sdk._invoke import load_entrypoint, run_instance

if len(sys.argv) not in (2, 3):
    print("usage: python -m harness.sdk package.module:function [trio|asyncio]", file=sys.stderr)
    sys.exit(2)
sys.exit(run_instance(load_entrypoint(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "trio"))
