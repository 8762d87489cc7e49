"""Models in a session: the :class:`LoadedModel` handle and how a model is keyed."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from accelpool.errors import InvalidRequest


@dataclass(eq=False)
class LoadedModel:
    """A model loaded in a session; pass it to :meth:`Session.run` to skip the lookup.

    ``inputs``/``outputs`` are the model's names in order; ``providers`` the execution
    providers onnxruntime actually uses for it.
    """

    key: Any
    kind: str
    source: Any = field(repr=False)
    inputs: list[str]
    outputs: list[str]
    providers: list[str]
    _owner: Any = field(default=None, repr=False)
    _ort: Any = field(default=None, repr=False)


def model_source(
    model: Any, bytes_keys: OrderedDict[int, tuple[bytes, Any]]
) -> tuple[Any, str, Any]:
    """(key, kind, source) of a model: a file by identity, bytes by content.

    ``bytes_keys`` remembers the last few bytes objects hashed, so passing the same
    object again costs no hash.
    """
    if isinstance(model, (str, os.PathLike)):
        # One stat per call: the file's identity and version, whatever path names it.
        try:
            st = os.stat(model)
        except OSError as e:
            raise InvalidRequest(
                f"cannot read model file {os.fspath(model)!r}: {e.strerror}"
            ) from None
        path_key = ("path", st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        return path_key, "path", os.path.abspath(os.fspath(model))
    if isinstance(model, (bytearray, memoryview)):
        model = bytes(model)
    elif not isinstance(model, bytes):
        serialize = getattr(model, "SerializeToString", None)
        if serialize is None:
            raise InvalidRequest(
                f"a model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}"
            )
        model = serialize()
    known = bytes_keys.get(id(model))
    if known is not None and known[0] is model:
        return known[1], "bytes", model
    import hashlib

    key = ("bytes", hashlib.blake2b(model, digest_size=16).hexdigest())
    # Remembering the object keeps its id from being reused while it is remembered.
    bytes_keys[id(model)] = (model, key)
    if len(bytes_keys) > 8:
        bytes_keys.popitem(last=False)
    return key, "bytes", model
