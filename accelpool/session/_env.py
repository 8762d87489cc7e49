"""The environment an isolated session worker starts with.

Two policies:

* ``inherit`` (the default): this process's environment, minus every accelerator
  visibility variable, plus the session's own. Runtimes need many variables a
  library cannot list in advance (``LD_LIBRARY_PATH``, vendor toolkit homes, proxy
  and certificate settings for model hubs), so by default nothing else is removed.
* ``clean``: only :data:`CLEAN_ENV_ALLOW` (names and ``*`` patterns: what a Python
  runtime and the vendor toolkits need to start, no credentials), whatever the
  caller adds with ``pass_env``, and the session's visibility variables. Cloud
  keys, tokens and anything else of the parent's stay behind.

``ACCELPOOL_WORKER_ENV=clean`` makes ``clean`` the default for a whole process tree
(a pool agent, say) without changing the code that opens sessions.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping

from accelpool.errors import InvalidRequest
from accelpool.session._worker import is_visibility_var

__all__ = ["CLEAN_ENV_ALLOW", "WORKER_ENV_VAR", "worker_environment"]

WORKER_ENV_VAR = "ACCELPOOL_WORKER_ENV"

#: What a clean worker keeps of the parent's environment (exact names and patterns).
CLEAN_ENV_ALLOW: tuple[str, ...] = (
    # the process itself
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    # finding the interpreter's packages and the runtimes' shared libraries
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
    # vendor toolkits that onnxruntime's providers load
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDNN_HOME",
    "ASCEND_HOME_PATH",
    "ASCEND_TOOLKIT_HOME",
    "ASCEND_OPP_PATH",
    "ASCEND_AICPU_PATH",
    "NEUWARE_HOME",
    # threading knobs the caller set on purpose
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def default_policy() -> str:
    """``inherit`` or ``clean``, from ``$ACCELPOOL_WORKER_ENV`` (default ``inherit``)."""
    raw = os.environ.get(WORKER_ENV_VAR, "").strip().lower()
    if raw in ("", "inherit"):
        return "inherit"
    if raw == "clean":
        return "clean"
    raise InvalidRequest(
        f"{WORKER_ENV_VAR}={os.environ.get(WORKER_ENV_VAR)!r} is neither 'inherit' nor 'clean'"
    )


def worker_environment(
    parent: Mapping[str, str],
    visibility: Mapping[str, str],
    *,
    clean: bool,
    pass_env: Iterable[str] = (),
) -> dict[str, str]:
    """The worker's environment: see the module's documentation for the two policies.

    ``pass_env`` (names or ``*`` patterns) adds to the allow-list of a clean worker;
    visibility variables are never passed from the parent either way: the worker
    sees exactly the session's target.
    """
    extra = tuple(pass_env)
    for pattern in extra:
        if not isinstance(pattern, str) or not pattern or "=" in pattern:
            raise InvalidRequest(f"pass_env entry {pattern!r} is not a variable name or pattern")
    env = {k: v for k, v in parent.items() if not is_visibility_var(k)}
    if clean:
        allow = CLEAN_ENV_ALLOW + extra
        env = {k: v for k, v in env.items() if any(fnmatch.fnmatchcase(k, p) for p in allow)}
    env.update(visibility)
    return env
