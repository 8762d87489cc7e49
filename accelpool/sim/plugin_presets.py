"""Fleet presets shipped by plugins: the ``accelpool.presets`` entry point group.

An out-of-tree distribution names a preset and the TOML text of its fleet::

    [project.entry-points."accelpool.presets"]
    lumen-box = "lumen_accelpool.presets:LUMEN_BOX"

The entry point's object is the fleet's TOML text (a ``str``), something with
``read_text()`` (a :class:`pathlib.Path` or an ``importlib.resources`` file), or a
callable returning either. ``--sim lumen-box`` then works as the in-tree presets do.
A preset that fails to load is logged and skipped, never fatal; an in-tree preset of
the same name wins.
"""

from __future__ import annotations

import logging
from typing import Any

GROUP = "accelpool.presets"
log = logging.getLogger(__name__)


def plugin_preset_names() -> list[str]:
    """Names of the presets installed plugins register (in-tree names excluded later)."""
    from accelpool.entrypoints import group

    return sorted({ep.name for ep in group(GROUP)})


def _text_of(obj: Any) -> str:
    if callable(obj) and not isinstance(obj, str) and not hasattr(obj, "read_text"):
        obj = obj()
    if isinstance(obj, str):
        return obj
    read = getattr(obj, "read_text", None)
    if callable(read):
        return str(read())
    raise TypeError(f"a preset is TOML text, a file or a callable; got {type(obj).__name__}")


def plugin_preset_text(name: str) -> str | None:
    """The TOML text of plugin preset ``name``; None when no plugin ships it or it fails
    to load (logged)."""
    from accelpool.entrypoints import group

    for ep in group(GROUP):
        if ep.name != name:
            continue
        try:
            return _text_of(ep.load())
        except Exception as e:
            log.warning("fleet preset %s (%s) failed to load: %s", ep.name, ep.value, e)
    return None
