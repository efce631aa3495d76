"""Regenerate the protobuf and grpclib modules from spacemesh.proto (the spacemesh.v1 API)
and harness.proto (our extras).

python scenarios/spacemesh/_proto/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc_tools  # type: ignore[import-untyped]
from grpc_tools import protoc  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROTOS = ("spacemesh", "harness")
# google/protobuf/*.proto (empty.proto) as grpc_tools ships them.
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"
# protoc's stubs subclass protobuf classes that mypy sees as Any; keep strict mypy quiet.
MARK = "# mypy: ignore-errors\n"


def main() -> int:
    """Run protoc with grpclib's plugin; exit code 0 on success."""
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT}",
            f"-I{WELL_KNOWN}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpclib_python_out={ROOT}",
            *(str(HERE / f"{name}.proto") for name in PROTOS),
        ]
    )
    if code != 0:
        return int(code)
    for path in (HERE / f"{n}{suffix}" for n in PROTOS for suffix in ("_pb2.pyi", "_grpc.py")):
        text = path.read_text()
        if not text.startswith(MARK):
            path.write_text(MARK + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
