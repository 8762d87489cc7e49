"""Console-script entry point."""

from __future__ import annotations

import sys

from accelpool.cli.app import main as _main


def main() -> None:
    sys.exit(_main())


if __name__ == "__main__":
    main()
