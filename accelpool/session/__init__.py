"""Sessions: claim a device or partition, isolate it, and run ONNX models on it.

>>> import accelpool
>>> inv = accelpool.discover(sim="dgx-a100")
>>> with accelpool.open_session(inv.device("nvidia:0")) as s:
...     s.env                        # {'CUDA_VISIBLE_DEVICES': 'GPU-…'}
...     outputs = s.run("model.onnx", {"x": x})

See docs/sessions.md for the claim rules, isolation and the worker protocol.
"""

from __future__ import annotations

from accelpool.session._claims import Claim, ClaimStore, holder_alive, process_start_time
from accelpool.session._session import (
    LoadedModel,
    ProviderFallbackWarning,
    Session,
    WorkerDied,
    open_session,
)

__all__ = [
    "Claim",
    "ClaimStore",
    "LoadedModel",
    "ProviderFallbackWarning",
    "Session",
    "WorkerDied",
    "holder_alive",
    "open_session",
    "process_start_time",
]
