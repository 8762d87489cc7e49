"""A base for backends over a vendor driver interface with a real binding and a simulator.

The pattern: an abstract driver interface (``init()``, the vendor calls), a ctypes
binding implementing it over the vendor library, and a simulator implementing it over
a simulated fleet. :class:`DriverBackend` owns the plumbing around that interface:
making the driver (the simulator when the fleet is simulated, else the binding once
the library is opened cheaply through a :class:`~accelpool.native.NativeLibrary`
loader), ``probe()``, ``close()``, the cached, locked enumeration, mapping the
driver's errors in :meth:`DriverBackend._do`, and fault injection on the simulator.

Every vendor fact stays in the subclass: its loader, its exception types, its
init-failure message and the hooks below. Discovery on a host without the vendor
library imports only this module, the subclass's module and its loader; the hooks
import the binding, the simulator and anything heavy when they are called.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.spi import FAULTS, Backend, BackendContext

if TYPE_CHECKING:
    from accelpool.native import NativeError, NativeLibrary
    from accelpool.spi import SimContext
    from accelpool.types import DeviceInfo

T = TypeVar("T")


class Driver(Protocol):
    """What the base needs of a driver: ``init()``, called once before any other call."""

    def init(self) -> None: ...


class FaultInjecting(Protocol):
    """What the base needs of a simulated driver to inject and clear faults."""

    def inject_fault(self, fault: str, index: int, /) -> None: ...

    def clear_faults(self) -> None: ...


class Listed(Protocol):
    """What the base needs of an enumerated device record: the :class:`DeviceInfo` reported."""

    @property
    def info(self) -> DeviceInfo: ...


DriverT = TypeVar("DriverT", bound=Driver)
EntryT = TypeVar("EntryT", bound=Listed)


class DriverBackend(Backend, Generic[DriverT, EntryT]):
    """A backend over a driver interface ``DriverT`` listing devices as ``EntryT`` records.

    Subclasses set the class attributes and implement the hooks; the driver is made,
    initialised and kept on first use of :attr:`driver` (or by :meth:`probe`).
    """

    #: Opens the vendor library without its signature tables (``from_option``, ``load()``).
    loader: ClassVar[type[NativeLibrary]]
    #: Raised by the loader or driver when the library or one of its functions is missing.
    unavailable_error: ClassVar[type[Exception]]
    #: Raised by the driver when a vendor call returns an error code.
    driver_error: ClassVar[type[NativeError]]
    #: The message when ``init()`` fails; ``{name}`` is the vendor's symbolic error name.
    init_failure: ClassVar[str]
    #: What enumerating is called in error messages, e.g. ``"listing Acme devices"``.
    listing: ClassVar[str]
    #: A device of this backend in messages, e.g. ``"Acme device"``.
    device_noun: ClassVar[str]

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._driver: DriverT | None = None
        self._entries: list[EntryT] | None = None
        self._lock = threading.Lock()

    # -- hooks ------------------------------------------------------------------
    @abc.abstractmethod
    def _simulator(self) -> type[DriverT]:
        """The simulator class (imported here), built as ``cls(sim, key=self.name)``."""

    @abc.abstractmethod
    def _binding(self, lib: Any, path: str | None) -> DriverT:
        """The real driver over the opened library (import the binding here, not above)."""

    @abc.abstractmethod
    def _driver_version(self, driver: DriverT) -> str:
        """The version ``probe()`` reports, read from an initialised driver."""

    @abc.abstractmethod
    def _close_driver(self, driver: DriverT) -> None:
        """Release the driver at :meth:`close`."""

    @abc.abstractmethod
    def _error(self, e: NativeError, doing: str, context: str = "") -> AccelPoolError:
        """The accelpool error for a driver error met while ``doing``."""

    @abc.abstractmethod
    def _read_devices(self) -> list[EntryT]:
        """Enumerate the devices through :attr:`driver` (cached by :meth:`_enumerate`)."""

    @abc.abstractmethod
    def _fault_index(self, device: DeviceInfo) -> int:
        """The index the simulator's ``inject_fault`` takes for ``device``."""

    # -- driver -----------------------------------------------------------------
    def _make_driver(self) -> DriverT:
        sim: SimContext | None = self.context.sim
        if sim is not None:
            return self._simulator()(sim, key=self.name)  # type: ignore[call-arg]
        # options["library"]: a path to the library, or an already loaded CDLL-like object.
        # Open it before importing the binding's signature tables: on most hosts it is
        # absent, and discovery should learn that cheaply (unavailable_error from here).
        loader = self.loader.from_option(self.context.options.get("library"))
        lib = loader.load()
        return self._binding(lib, loader.path)

    @property
    def driver(self) -> DriverT:
        """The driver in use (created and initialised on first use)."""
        if self._driver is None:
            self.probe()
        assert self._driver is not None
        return self._driver

    @property
    def simulated(self) -> bool:
        return self.context.sim is not None

    def probe(self) -> str | None:
        try:
            driver = self._make_driver()
            driver.init()
        except self.unavailable_error as e:
            raise BackendUnavailable(str(e)) from None
        except self.driver_error as e:
            raise BackendUnavailable(
                self.init_failure.format(name=e.name),
                vendor_code=e.code,
                vendor_message=e.vendor_message,
            ) from None
        self._driver = driver
        try:
            return self._driver_version(driver)
        except (self.driver_error, self.unavailable_error):
            return None

    def close(self) -> None:
        if self._driver is not None:
            self._close_driver(self._driver)

    # -- calls and enumeration ----------------------------------------------------
    def _do(self, doing: str, call: Callable[[], T], context: str = "") -> T:
        """``call()``, its driver errors mapped by :meth:`_error`."""
        try:
            return call()
        except self.driver_error as e:
            raise self._error(e, doing, context) from None
        except self.unavailable_error as e:
            raise UnsupportedOperation(f"{doing}: {e}") from None

    def _enumerate(self) -> list[EntryT]:
        with self._lock:
            if self._entries is None:
                self._entries = self._do(self.listing, self._read_devices)
            return self._entries

    def _entry(self, native_id: str) -> EntryT:
        """The enumerated device with ``native_id``; NotFound when there is none."""
        for entry in self._enumerate():
            if entry.info.native_id == native_id:
                return entry
        raise NotFound(f"no {self.device_noun} {native_id!r}; run 'accelpool ls' to see device ids")

    def devices(self) -> Sequence[DeviceInfo]:
        return [entry.info for entry in self._enumerate()]

    # -- SPI: faults (simulator only) ----------------------------------------------
    def _simulated_driver(self) -> FaultInjecting:
        drv = self.driver
        if not isinstance(drv, self._simulator()):
            raise UnsupportedOperation("fault injection needs a simulated fleet (--sim)")
        # The simulator class implements the fault calls; the driver interface does not.
        return cast(FaultInjecting, drv)

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        drv = self._simulated_driver()
        if fault not in FAULTS:
            raise InvalidRequest(f"unknown fault {fault!r}; faults: {', '.join(FAULTS)}")
        drv.inject_fault(fault, self._fault_index(device))

    def clear_faults(self) -> None:
        self._simulated_driver().clear_faults()
