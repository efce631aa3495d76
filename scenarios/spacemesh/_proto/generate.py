"""Regenerate the protobuf and grpclib modules from spacemesh.proto (run from the repo root).

python scenarios/spacemesh/_proto/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROTO = HERE.relative_to(ROOT) / "spacemesh.proto"
# protoc's stubs subclass protobuf classes that mypy sees as Any; keep strict mypy quiet.
MARK = "# mypy: ignore-errors\n"


def main() -> int:
    """Run protoc with grpclib's plugin; exit code 0 on success."""
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpclib_python_out={ROOT}",
            str(ROOT / PROTO),
        ]
    )
    if code != 0:
        return int(code)
    for name in ("spacemesh_pb2.pyi", "spacemesh_grpc.py"):
        path = HERE / name
        text = path.read_text()
        if not text.startswith(MARK):
            path.write_text(MARK + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
