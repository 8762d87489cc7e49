"""The accelpool conformance suite: what a backend runs to prove it keeps the contract.

>>> from accelpool_conformance import run
>>> result = run("nvidia", sim="dgx-a100", profile="full", report="report.json")
>>> result.exit_code, result.report["summary"]

Also ``accelpool conformance --backend NAME`` and a pytest plugin
(``pytest --pyargs accelpool_conformance.suite --accelpool-backend NAME``).
Importing this package is cheap: the suite loads only when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accelpool.lazyload import lazy_attributes

__version__ = "0.1.0"

if TYPE_CHECKING:
    from accelpool_conformance.context import AREAS, PROFILES, Tuning
    from accelpool_conformance.expectations import Expectations
    from accelpool_conformance.invariants import InvariantBroken
    from accelpool_conformance.runner import RunResult, run

__all__ = [
    "AREAS",
    "PROFILES",
    "Expectations",
    "InvariantBroken",
    "RunResult",
    "Tuning",
    "__version__",
    "run",
]

_LAZY = {
    "run": "accelpool_conformance.runner",
    "RunResult": "accelpool_conformance.runner",
    "Tuning": "accelpool_conformance.context",
    "AREAS": "accelpool_conformance.context",
    "PROFILES": "accelpool_conformance.context",
    "Expectations": "accelpool_conformance.expectations",
    "InvariantBroken": "accelpool_conformance.invariants",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
