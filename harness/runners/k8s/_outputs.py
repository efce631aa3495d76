"""An instance's output files through its log: the one channel every cluster keeps after a
pod's containers have ended (exec needs a running container). The agent ends its log with
a marker line and the files as a gzipped tar in base64; the runner splits them off again."""

from __future__ import annotations

import base64
import binascii
import io
import tarfile
from pathlib import Path

MARKER = "--- harness outputs (tar.gz, base64) ---"
END = "--- end of harness outputs ---"  # what the log has after it (stderr at exit) is kept
MAX_BYTES = 8 << 20  # of log text: under the kubelet's default log rotation (10 MiB)


def pack(directory: Path) -> str:
    """The text the agent prints after the instance: the marker, then the files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname=".")
    data = buf.getvalue()
    text = base64.b64encode(data).decode()
    lines = [text[i:i + 76] for i in range(0, len(text), 76)]
    packed = "\n".join([MARKER, *lines, END, ""])
    # base64 makes 4 of each 3 bytes: the text, not the tar, is what the log must hold (an
    # 8 MiB tar was 10.7 MiB of log, rotated away from its marker)
    if len(packed) > MAX_BYTES:
        return (f"{MARKER}\n# too large to ship through the log ({len(data)} bytes, "
                f"{len(packed)} as text)\n{END}\n")
    return packed


def unpack(log: str, directory: Path) -> str:
    """Write the files packed at the end of `log` into `directory` (nothing outside it);
    the log without them."""
    head, marker, tail = log.partition(f"{MARKER}\n")
    if not marker:
        return log
    packed, _, after = tail.partition(f"{END}\n")
    head += after
    body = "".join(ln for ln in packed.splitlines() if not ln.startswith("#"))
    if body:
        try:
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(body)), mode="r:gz") as tar:
                tar.extractall(directory, filter="data")
        except (binascii.Error, tarfile.TarError, EOFError, OSError) as e:
            # kept whole: what came after the marker is in the log, the reason at its end
            return f"{log}\n# harness: the output files could not be unpacked: {e}\n"
    return head
