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

from typing import TYPE_CHECKING

from accelpool.lazyload import lazy_attributes
from accelpool.session._claims import (
    Claim,
    ClaimStore,
    ClaimStoreError,
    holder_alive,
    process_start_time,
)

if TYPE_CHECKING:
    from accelpool.session._env import CLEAN_ENV_ALLOW, WORKER_ENV_VAR
    from accelpool.session._session import (
        PATH_RECHECK_S,
        LoadedModel,
        ProviderFallbackWarning,
        Session,
        WorkerDied,
        open_session,
    )

# The session machinery (subprocess, workers, hashing) loads on first use: the claim
# store alone is what ``accelpool ls`` and the claims API need.
__getattr__ = lazy_attributes(
    __name__,
    {
        "CLEAN_ENV_ALLOW": "accelpool.session._env",
        "WORKER_ENV_VAR": "accelpool.session._env",
        **dict.fromkeys(
            (
                "PATH_RECHECK_S",
                "LoadedModel",
                "ProviderFallbackWarning",
                "Session",
                "WorkerDied",
                "open_session",
            ),
            "accelpool.session._session",
        ),
    },
)


__all__ = [
    "CLEAN_ENV_ALLOW",
    "PATH_RECHECK_S",
    "WORKER_ENV_VAR",
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
