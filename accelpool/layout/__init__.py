"""Declarative layouts: say which partitions each device should hold, and apply it.

A layout file (TOML) lists ``[[device]]`` tables, each with a selector (``select``:
``"all"``, an index, a list of indexes, or a device id; ``model``: a substring of the
model name; ``device-filter``: PCI device ids) and ``partitions``: profile -> count,
optionally ``mig = true|false``. mig-parted's ``mig-configs`` YAML is read too
(``config=NAME``). :func:`plan` computes the change from what exists; :func:`apply`
carries it out all-or-nothing; :func:`propose` computes the layout a demand needs.
See docs/layouts.md.
"""

from accelpool.layout.change import DevicePlan, apply, live_claims, plan, plan_device
from accelpool.layout.demand import Proposal, propose
from accelpool.layout.spec import Entry, config_names, load

__all__ = [
    "DevicePlan",
    "Entry",
    "Proposal",
    "apply",
    "config_names",
    "live_claims",
    "load",
    "plan",
    "plan_device",
    "propose",
]
