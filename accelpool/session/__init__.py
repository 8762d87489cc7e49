"""Sessions: claim a device or partition, isolate it, and run ONNX models on it.

>>> import accelpool
>>> inv = accelpool.discover(sim="dgx-a100")
>>> part = inv.device("nvidia:0").create_partition("1g.5gb")
>>> with accelpool.open_session(part) as s:
...     s.env                        # {'CUDA_VISIBLE_DEVICES': 'MIG-…'}
...     outputs = s.run("model.onnx", {"x": x})

See docs/sessions.md for the claim rules, isolation and the worker protocol.
"""

from __future__ import annotations

from accelpool.session._claims import (
    Claim,
    ClaimStore,
    ClaimStoreError,
    holder_alive,
    process_start_time,
)
from accelpool.session._session import (
    PATH_RECHECK_S,
    LoadedModel,
    ProviderFallbackWarning,
    Session,
    WorkerDied,
    open_session,
)

__all__ = [
    "PATH_RECHECK_S",
    "Claim",
    "ClaimStore",
    "ClaimStoreError",
    "LoadedModel",
    "ProviderFallbackWarning",
    "Session",
    "WorkerDied",
    "holder_alive",
    "open_session",
    "process_start_time",
]
