"""``accelpool run``: run an ONNX model on a device or partition (see accelpool.session)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Placeholder until sessions land: the subcommand is added by the session work."""
