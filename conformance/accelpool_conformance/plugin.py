"""pytest plugin of the accelpool conformance suite (auto-loaded through ``pytest11``).

It is inert unless ``--accelpool-backend NAME`` is given (or a run was started through
:func:`accelpool_conformance.run`): importing it loads nothing but pytest.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("accelpool", "accelpool conformance suite")
    group.addoption(
        "--accelpool-backend",
        default=None,
        metavar="NAME",
        help="run the accelpool conformance suite against backend NAME",
    )
