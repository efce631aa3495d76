"""redis-server as the system under test, driven by clients that speak RESP over TCP."""

from __future__ import annotations

import functools
import shutil

import trio

from harness import sdk

PORT = 6379


async def _command(stream: trio.SocketStream, buffer: bytearray, *args: str) -> bytes:
    """Send one RESP command; return the reply's first line (enough for SET/GET of text)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        data = a.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    await stream.send_all(b"".join(parts))
    while True:
        end = buffer.find(b"\r\n")
        if end >= 0:
            head = bytes(buffer[:end])
            if head.startswith(b"$") and head != b"$-1":
                size = int(head[1:])
                if len(buffer) >= end + 2 + size + 2:
                    value = bytes(buffer[end + 2 : end + 2 + size])
                    del buffer[: end + 2 + size + 2]
                    return value
            else:
                del buffer[: end + 2]
                return head
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise sdk.TestFailure("redis closed the connection")
        buffer += chunk


async def _until_accepting(proc: trio.Process, ip: str, within: float = 10) -> None:
    """Wait until redis-server accepts connections; TestFailure if it exits first or is
    not ready within `within` seconds."""
    with trio.move_on_after(within):
        while proc.returncode is None:
            try:
                await (await trio.open_tcp_stream(ip, PORT)).aclose()
                return
            except OSError:
                await trio.sleep(0.05)
        raise sdk.TestFailure(f"redis-server exited with code {proc.returncode} before it "
                              f"accepted connections (its output: this instance's stdout.log, stderr.log)")
    raise sdk.TestFailure(f"redis-server did not accept connections on {ip}:{PORT} "
                          f"within {within:g}s")


async def _serve(env: sdk.RunEnv) -> None:
    redis = shutil.which("redis-server")
    if redis is None:
        raise sdk.TestFailure("redis-server is not installed (Debian: apt-get install redis-server)")
    ip = env.data_ip or "127.0.0.1"
    argv = [redis, "--bind", ip, "--port", str(PORT), "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", str(env.outputs_path)]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(functools.partial(trio.run_process, argv, check=False))
        await _until_accepting(proc, ip)
        await env.sync.publish("server", {"ip": ip, "port": PORT})
        await env.sync.signal_and_wait("done", env.instance_count)
        proc.terminate()


async def _client(env: sdk.RunEnv) -> None:
    async with env.sync.subscribe("server") as servers:
        server = await servers.__anext__()
    keys = env.params["keys"]
    async with await trio.open_tcp_stream(server["ip"], server["port"]) as stream:
        buffer = bytearray()
        for i in range(keys):
            reply = await _command(stream, buffer, "SET", f"{env.instance_id}:{i}", f"v{i}")
            if reply != b"+OK":
                raise sdk.TestFailure(f"SET answered {reply!r}")
        for i in range(keys):
            value = await _command(stream, buffer, "GET", f"{env.instance_id}:{i}")
            if value != f"v{i}".encode():
                raise sdk.TestFailure(f"GET {env.instance_id}:{i} gave {value!r}, not v{i}")
    await env.record_message(f"{keys} keys written and read back")
    await env.sync.signal_and_wait("done", env.instance_count)


async def setget(env: sdk.RunEnv) -> None:
    """The server role runs redis-server; clients write and read back their keys."""
    latency = float(env.params["latency"])
    await env.network.shape_and_wait(sdk.LinkShape(latency_ms=latency * 1000) if latency
                                     else None)
    await (_serve(env) if env.role == "server" else _client(env))
