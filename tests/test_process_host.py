"""The process host (harness.runners._forkserver) as the supervisor starts it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from harness.runners._process import Launch, ProcessHost

ROOT = Path(__file__).resolve().parent.parent


def test_a_host_that_dies_before_it_is_ready_fails_every_spawn_and_does_not_hang(
    tmp_path: Path,
) -> None:
    """Its entrypoint's import ends the process before `ready` or `fatal`: starting it
    returns (it used to wait forever), and each spawn fails naming its exit status."""
    (tmp_path / "dies_at_import.py").write_text("import os\nos._exit(3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    host = ProcessHost("dies_at_import:case")
    out = tmp_path / "out.log"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):  # a guard against the hang, not a timing
                await nursery.start(host.run, tmp_path, env)
            await host.prefork(3)  # asks nothing of a dead host, and does not raise
            with pytest.raises(OSError, match=r"the process host exited \(status 3\)"):
                await host.spawn(Launch(env, tmp_path, out, out))
            nursery.cancel_scope.cancel()

    trio.run(main)
