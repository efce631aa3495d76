"""The plan's one program: a server's launcher or a client, by the instance's role.

    program = ["python", "-m", "scenarios.nats.node"]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness import sdk


def _unshadow() -> None:
    """Let `import nats` find nats-py: the harness puts each plan's parent directory on the
    import path (for `<plan>.module` entrypoints), where this plan's own directory would
    be taken for the `nats` package. Plan code is imported as `scenarios.nats` anyway."""
    plans = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != plans]


def main() -> None:
    """Become the server (exec nats-server) or run the client's test function."""
    if os.environ.get("TEST_INSTANCE_ROLE") == "server":
        from scenarios.nats import server

        sys.exit(server.main([]))
    _unshadow()
    from scenarios.nats import client

    sdk.invoke(client.run, "asyncio")


if __name__ == "__main__":
    main()
