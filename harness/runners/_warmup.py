"""Warming the process host: it runs an instance's own start-up a few times before the
first fork, against a stand-in sync service of its own.

A forked instance shares the host's memory copy-on-write. Python writes to what it runs:
a function's first calls count towards its specialisation, a type's first attribute look-ups
fill the method cache, and so on. Whatever the host never ran, every instance writes for the
first time itself, each paying page faults and the copies of those pages. Run first in the
host, that start-up (reading its environment, the event loop, the connection, the `hello`,
the events and a signal) costs the instances far less: at 1,000 instances, seconds of CPU.

Nothing of it leaves the host: the stand-in service lives on a Unix socket in a temporary
directory, removed before the first fork, and answers every request with success.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from pathlib import Path

import orjson

from harness._runparams import RunParams
from harness.observe._logging import configure_logging
from harness.runners._process import warm_up_prefix
from harness.sdk._invoke import _run, run_on
from harness.sdk._runenv import RunEnv

ROUNDS = 12
"""Start-ups run: enough for CPython 3.11 to specialise what they run (its warm-up is 8
calls of a function)."""


async def _register(env: RunEnv) -> None:
    await env.sync.signal_entry("warm-up")


def warm_up(backend: str, rounds: int = ROUNDS) -> None:
    """Run an instance's start-up `rounds` times in this process, with nothing outside it
    told. Call it before the first fork, with no other thread running."""
    with tempfile.TemporaryDirectory(prefix=warm_up_prefix(os.getpid())) as tmp:
        path = str(Path(tmp) / "s")  # short: an AF_UNIX path fits 108 bytes, TMPDIR may be long
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        server = threading.Thread(target=_answer, args=(listener, rounds), daemon=True)
        server.start()
        try:
            params = RunParams(
                plan="warm-up", case="warm-up", run_id="warm-up", instance_count=1,
                group_id="warm-up", group_instance_count=1, global_seq=1, group_seq=1,
                instance_id="warm-up/0", outputs_path=Path(tmp), sync_socket=path,
                sync_token="warm-up",
            )  # fmt: skip
            for _ in range(rounds):
                env = RunEnv.from_environ(params.to_environ())
                # As an instance configures it: the instances' own calls then only re-point
                # the file and the name (`configure_logging` keeps the rest).
                configure_logging(json_path=Path(tmp) / "log.jsonl", instance=env.instance_id)
                run_on(backend, _run, _register, env)
            configure_logging(json_path=Path(os.devnull), instance=params.instance_id)  # no file kept
        finally:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the server if it still waits
            listener.close()
            server.join()


def _answer(listener: socket.socket, rounds: int) -> None:
    """The stand-in sync service: every request succeeds (`seq` 1), for `rounds` clients."""
    with contextlib.suppress(OSError):
        for _ in range(rounds):
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    rid = orjson.loads(line)["id"]
                    conn.sendall(orjson.dumps({"id": rid, "ok": True, "seq": 1}) + b"\n")
