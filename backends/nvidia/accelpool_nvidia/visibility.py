"""``CUDA_VISIBLE_DEVICES``: building it from targets and parsing an existing value strictly."""

from __future__ import annotations

import re
from collections.abc import Iterable

from accelpool.errors import InvalidRequest

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GPU = re.compile(rf"GPU-({_UUID})")
_MIG = re.compile(rf"MIG-({_UUID})")
_MIG_LEGACY = re.compile(rf"MIG-GPU-({_UUID})/(\d+)/(\d+)")
_INDEX = re.compile(r"\d+")

#: one entry of CUDA_VISIBLE_DEVICES: an index, or a normalised GPU-/MIG- id
VisibleDevice = int | str


def parse_cuda_visible_devices(value: str) -> tuple[VisibleDevice, ...]:
    """Parse a ``CUDA_VISIBLE_DEVICES`` value strictly.

    Accepts comma-separated device indices (``0``), GPU UUIDs (``GPU-<uuid>``),
    MIG device UUIDs (``MIG-<uuid>``) and pre-R470 MIG ids
    (``MIG-GPU-<uuid>/<gi>/<ci>``); an empty value means no device. UUIDs come back
    with lower-case hex. Where CUDA silently stops at the first bad entry, this raises
    :class:`~accelpool.errors.InvalidRequest` for empty entries, negative or
    malformed indices, UUID prefixes, anything else, and duplicates.
    """
    if not isinstance(value, str):
        raise InvalidRequest(f"CUDA_VISIBLE_DEVICES must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        return ()
    seen: dict[VisibleDevice, str] = {}
    result: list[VisibleDevice] = []
    for pos, raw in enumerate(text.split(",")):
        entry = raw.strip()
        parsed = _parse_entry(entry, pos, value)
        if parsed in seen:
            raise InvalidRequest(
                f"CUDA_VISIBLE_DEVICES={value!r} names {entry!r} twice "
                f"(entries {list(seen).index(parsed) + 1} and {pos + 1}); list each device once"
            )
        seen[parsed] = entry
        result.append(parsed)
    return tuple(result)


def _parse_entry(entry: str, pos: int, value: str) -> VisibleDevice:
    where = f"entry {pos + 1} of CUDA_VISIBLE_DEVICES={value!r}"
    if not entry:
        raise InvalidRequest(f"{where} is empty; remove the stray comma")
    if _INDEX.fullmatch(entry):
        return int(entry)
    if entry.startswith("-") and _INDEX.fullmatch(entry[1:]):
        raise InvalidRequest(
            f"{where} is a negative index {entry!r}; use an empty value to hide every GPU"
        )
    if m := _GPU.fullmatch(entry):
        return f"GPU-{m.group(1).lower()}"
    if m := _MIG.fullmatch(entry):
        return f"MIG-{m.group(1).lower()}"
    if m := _MIG_LEGACY.fullmatch(entry):
        return f"MIG-GPU-{m.group(1).lower()}/{int(m.group(2))}/{int(m.group(3))}"
    if entry[:4].upper() in ("GPU-", "MIG-"):
        raise InvalidRequest(
            f"{where}: {entry!r} is not a whole GPU-/MIG- UUID; give the full id "
            "that 'nvidia-smi -L' or 'accelpool ls' prints"
        )
    raise InvalidRequest(
        f"{where}: {entry!r} is neither an index nor a GPU-/MIG- UUID "
        "(for example 0, GPU-<uuid> or MIG-<uuid>)"
    )


def format_cuda_visible_devices(ids: Iterable[VisibleDevice]) -> str:
    """The value for a list of ids; validates it by parsing it back."""
    value = ",".join(str(i) for i in ids)
    parse_cuda_visible_devices(value)
    return value
