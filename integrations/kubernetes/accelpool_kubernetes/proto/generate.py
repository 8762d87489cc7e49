"""Regenerate the committed gRPC stubs from the .proto files in this folder.

Run from the repository root:
``uv run python integrations/kubernetes/accelpool_kubernetes/proto/generate.py``
(needs grpcio-tools, in the dev group). The stubs are committed so that installing
accelpool-kubernetes needs no code generator.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # integrations/kubernetes: imports read accelpool_kubernetes.proto.*


def main() -> int:
    for proto in sorted(HERE.glob("*.proto")):
        rel = proto.relative_to(ROOT)
        rc = protoc.main(
            [
                "protoc",
                f"-I{ROOT}",
                f"--python_out={ROOT}",
                f"--pyi_out={ROOT}",
                f"--grpc_python_out={ROOT}",
                str(rel),
            ]
        )
        if rc:
            return int(rc)
    return 0


if __name__ == "__main__":
    import os

    os.chdir(ROOT)
    sys.exit(main())
