"""Every `accelpool` command loads the exporter's CLI entry point; that must stay cheap."""

from __future__ import annotations

import subprocess
import sys


def test_cli_entry_point_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, accelpool_exporter.cli; "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def test_public_names_still_import() -> None:
    from accelpool_exporter import AccelpoolCollector, Snapshot, serve, take_snapshot

    assert callable(serve) and callable(take_snapshot)
    assert AccelpoolCollector.__name__ == "AccelpoolCollector"
    assert Snapshot.__name__ == "Snapshot"
