"""Lazy loading of a vendor's C library through ctypes, for backend plugins.

A backend that binds a vendor's management library (``libdcmi.so``, ``libcndev.so``,
``libacme.so`` …) subclasses :class:`NativeLibrary` and states only its vendor facts:
the library's file name, where the vendor installs it, the environment variable that
names it, each function's C signature, and the exceptions it raises. The base class
opens the library on first use, looks up each function once (setting its ``argtypes``
and ``restype``), and turns a non-zero return code into the vendor's error.

:class:`NativeError` is a base for that error: it carries the vendor's code and the
function's name, and names the code from the vendor's table.

Nothing here interprets a vendor's numbers; that is the backend's job.
"""

from __future__ import annotations

import abc
import ctypes
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from accelpool.spi import BackendContext

__all__ = ["NativeError", "NativeLibrary", "c_text", "check_presence"]


def c_text(raw: bytes) -> str:
    """A C string from a fixed-size buffer: up to the first NUL, decoded, stripped."""
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()


class NativeError(Exception):
    """A vendor function returned a non-zero code.

    Subclasses set :attr:`error_names` (code -> ``(symbolic name, text)``) and
    :attr:`unknown_name`, the name given to a code missing from the table (``{code}``
    is replaced by the code).
    """

    error_names: ClassVar[Mapping[int, tuple[str, str]]] = {}
    unknown_name: ClassVar[str] = "error {code}"

    def __init__(self, code: int, function: str) -> None:
        self.code = code
        self.function = function
        name, text = self.error_names.get(
            code, (self.unknown_name.format(code=code), "unknown error")
        )
        self.name = name
        self.text = text
        super().__init__(f"{function} returned {code} ({name}: {text})")

    @property
    def vendor_message(self) -> str:
        """``function: NAME: text``, for :class:`~accelpool.errors.AccelPoolError`."""
        return f"{self.function}: {self.name}: {self.text}"


class NativeLibrary(abc.ABC):
    """A vendor's shared library, opened on first use, with typed, cached functions.

    Subclasses set the class attributes and implement :meth:`not_found`,
    :meth:`missing_function` and :meth:`failed`. ``lib`` replaces the loaded library
    (tests pass an object whose attributes are the C functions); ``path`` names the
    shared object to open, before :attr:`env_var` and :attr:`default_locations`.
    """

    #: The library's file name, as the loader finds it (``libacme.so``).
    library_name: ClassVar[str]
    #: Where to look when neither ``path`` nor :attr:`env_var` names the library.
    default_locations: ClassVar[Sequence[str]]
    #: Environment variable naming the library explicitly.
    env_var: ClassVar[str]
    #: Function name -> ``(restype, argtypes)``.
    signatures: ClassVar[Mapping[str, tuple[Any, Sequence[Any]]]]

    def __init__(self, lib: Any | None = None, path: str | None = None) -> None:
        self._lib = lib
        self._path = path
        self._fns: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_option(cls, library: Any) -> Self:
        """The binding a backend option names: a path to the shared object, an already
        loaded CDLL-like object, or None (search as :meth:`candidates` says)."""
        if isinstance(library, str):
            return cls(path=library)
        return cls(lib=library)

    # -- what a subclass says ------------------------------------------------
    @abc.abstractmethod
    def not_found(self, detail: str) -> Exception:
        """The error when no candidate loads; ``detail`` is ``" (why)"`` or empty."""

    @abc.abstractmethod
    def missing_function(self, name: str, library: str) -> Exception:
        """The error when ``library`` (a path or the file name) lacks function ``name``."""

    @abc.abstractmethod
    def failed(self, code: int, name: str) -> Exception:
        """The error when function ``name`` returned the non-zero ``code``."""

    # -- loading -------------------------------------------------------------
    @property
    def path(self) -> str | None:
        """The shared object opened (or to open); None before a search finds one."""
        return self._path

    def candidates(self) -> list[str]:
        """What :meth:`load` tries, in order: ``path``, else the variable, else defaults."""
        if self._path:
            return [self._path]
        env = os.environ.get(self.env_var)
        return [env] if env else list(self.default_locations)

    def load(self) -> Any:
        """Open the library (once); raises :meth:`not_found`'s error when none loads."""
        with self._lock:
            if self._lib is None:
                errors = []
                for candidate in self.candidates():
                    try:
                        self._lib = ctypes.CDLL(candidate)
                        self._path = candidate
                        break
                    except OSError as e:
                        text = str(e).splitlines()[0] if str(e) else candidate
                        # A library that exists but will not load says why; absence does not.
                        if "No such file" not in text:
                            errors.append(text)
                else:
                    raise self.not_found(f" ({errors[0]})" if errors else "")
            return self._lib

    def function(self, name: str) -> Any:
        """Function ``name``, looked up and typed on first use from :attr:`signatures`."""
        fn = self._fns.get(name)
        if fn is not None:
            return fn
        lib = self.load()
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise self.missing_function(name, self._path or self.library_name) from None
        restype, argtypes = self.signatures[name]
        fn.argtypes = argtypes
        fn.restype = restype
        self._fns[name] = fn
        return fn

    def call(self, name: str, *args: Any) -> None:
        """Call ``name``; a non-zero return code raises :meth:`failed`'s error."""
        rc = self.function(name)(*args)
        if rc != 0:
            raise self.failed(int(rc), name)


def check_presence(
    loader: type[NativeLibrary], unavailable: type[Exception], context: BackendContext
) -> None:
    """An ``accelpool.presence`` check for a backend over ``loader``'s library.

    Raises :class:`~accelpool.errors.BackendUnavailable` with the loader's own
    "not found" text (``unavailable``, as the backend's probe reports it) when the
    library named by the ``library`` option, or found where ``loader`` looks, does not
    open; returns when it does.
    """
    try:
        loader.from_option(context.options.get("library")).load()
    except unavailable as e:
        from accelpool.errors import BackendUnavailable

        raise BackendUnavailable(str(e)) from None
