"""DriverBackend: making the driver, probe, close, mapped calls, enumeration and faults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from accelpool.driver_backend import DriverBackend
from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.native import NativeError, NativeLibrary
from accelpool.sim.fleet import FleetDevice
from accelpool.sim.state import StateStore
from accelpool.spi import BackendContext, SimContext
from accelpool.types import DeviceInfo


class FakeError(NativeError):
    error_names: ClassVar[dict[int, tuple[str, str]]] = {7: ("FAKE_BROKEN", "broken")}


class FakeUnavailable(Exception):
    pass


class FakeLoader(NativeLibrary):
    library_name = "libfake.so"
    default_locations = ("libfake.so",)
    env_var = "ACCELPOOL_FAKE_LIBRARY_FOR_TESTS"
    signatures: ClassVar[dict[str, tuple[Any, list[Any]]]] = {}

    def not_found(self, detail: str) -> Exception:
        return FakeUnavailable(f"fake library not found{detail}; install it")

    def missing_function(self, name: str, library: str) -> Exception:
        return FakeUnavailable(f"{library} has no {name}")

    def failed(self, code: int, name: str) -> Exception:
        return FakeError(code, name)


class FakeDriver:
    """The driver interface: a real binding over ``lib``, whose attributes say what fails."""

    def __init__(self, lib: Any = None, path: str | None = None) -> None:
        self.lib, self.path, self.closed = lib, path, False
        self.reads = 0

    def init(self) -> None:
        if getattr(self.lib, "init_code", 0):
            raise FakeError(self.lib.init_code, "fakeInit")

    def version(self) -> str:
        if getattr(self.lib, "version_fails", False):
            raise FakeUnavailable("no fakeVersion")
        return "1.2.3"

    def close(self) -> None:
        self.closed = True


class FakeSimulator(FakeDriver):
    def __init__(self, sim: SimContext, key: str) -> None:
        super().__init__()
        self.sim, self.key = sim, key
        self.faults: list[tuple[str, int]] = []

    def inject_fault(self, fault: str, index: int) -> None:
        self.faults.append((fault, index))

    def clear_faults(self) -> None:
        self.faults.clear()


@dataclass(frozen=True)
class Entry:
    index: int
    info: DeviceInfo


class FakeBackend(DriverBackend[FakeDriver, Entry]):
    loader = FakeLoader
    unavailable_error = FakeUnavailable
    driver_error = FakeError
    init_failure = "fakeInit failed ({name}); check the fake driver"
    listing = "listing fake devices"
    device_noun = "fake device"

    def _simulator(self) -> type[FakeSimulator]:
        return FakeSimulator

    def _binding(self, lib: Any, path: str | None) -> FakeDriver:
        return FakeDriver(lib, path)

    def _driver_version(self, driver: FakeDriver) -> str:
        return driver.version()

    def _close_driver(self, driver: FakeDriver) -> None:
        driver.close()

    def _error(self, e: NativeError, doing: str, context: str = "") -> AccelPoolError:
        return AccelPoolError(f"{doing}: fake call failed", vendor_code=e.code)

    def _read_devices(self) -> list[Entry]:
        self.driver.reads += 1
        if getattr(self.driver.lib, "list_code", 0):
            raise FakeError(self.driver.lib.list_code, "fakeList")
        info = DeviceInfo("F-0", 0, "Fake", "F1", memory_bytes=1, compute_units=1)
        return [Entry(5, info)]

    def _fault_index(self, device: DeviceInfo) -> int:
        return self._entry(device.native_id).index


class Lib:
    """An already loaded library (what ``options["library"]`` may hold)."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def real(**lib: Any) -> FakeBackend:
    return FakeBackend(BackendContext(name="fake", options={"library": Lib(**lib)}))


def simulated(tmp_path: Path) -> FakeBackend:
    state = StateStore(tmp_path / "state.json")
    sim = SimContext("f", (FleetDevice("fake", "F1"),), state, tmp_path / "fake")
    return FakeBackend(BackendContext(name="fake-sim", sim=sim))


def test_probe_opens_the_library_given_and_reports_the_version() -> None:
    backend = real()
    assert backend.probe() == "1.2.3"
    assert isinstance(backend.driver.lib, Lib) and not backend.simulated
    backend.close()
    assert backend.driver.closed


def test_a_missing_library_makes_the_backend_unavailable_with_the_loader_message(
    tmp_path: Path,
) -> None:
    backend = FakeBackend(
        BackendContext(name="fake", options={"library": str(tmp_path / "libfake.so")})
    )
    with pytest.raises(BackendUnavailable, match="fake library not found"):
        backend.probe()
    backend.close()  # nothing was made, nothing to close


def test_an_init_failure_keeps_the_vendor_code_and_text() -> None:
    with pytest.raises(BackendUnavailable) as info:
        real(init_code=7).probe()
    assert str(info.value).startswith("fakeInit failed (FAKE_BROKEN); check the fake driver")
    assert info.value.vendor_code == 7
    assert info.value.vendor_message == "fakeInit: FAKE_BROKEN: broken"


def test_an_unreadable_version_still_probes() -> None:
    assert real(version_fails=True).probe() is None


def test_enumeration_is_read_once_and_looked_up_by_id() -> None:
    backend = real()
    assert [d.native_id for d in backend.devices()] == ["F-0"]
    assert backend._entry("F-0").index == 5
    assert backend.driver.reads == 1
    with pytest.raises(NotFound, match="no fake device 'F-9'; run 'accelpool ls'"):
        backend._entry("F-9")


def test_driver_errors_are_mapped_by_the_backend() -> None:
    with pytest.raises(AccelPoolError, match="listing fake devices: fake call failed") as info:
        real(list_code=7).devices()
    assert info.value.vendor_code == 7

    def missing() -> None:
        raise FakeUnavailable("no fakeThing")

    with pytest.raises(UnsupportedOperation, match="reading: no fakeThing"):
        real()._do("reading", missing)


def test_a_simulated_fleet_uses_the_simulator_and_takes_faults(tmp_path: Path) -> None:
    backend = simulated(tmp_path)
    device = backend.devices()[0]
    drv = backend.driver
    assert isinstance(drv, FakeSimulator) and drv.key == "fake-sim" and backend.simulated
    backend.inject_fault("device-lost", device)
    assert drv.faults == [("device-lost", 5)]
    with pytest.raises(InvalidRequest, match="unknown fault 'melt'"):
        backend.inject_fault("melt", device)
    backend.clear_faults()
    assert drv.faults == []


def test_faults_need_a_simulated_fleet() -> None:
    backend = real()
    with pytest.raises(UnsupportedOperation, match="needs a simulated fleet"):
        backend.inject_fault("device-lost", backend.devices()[0])
    with pytest.raises(UnsupportedOperation, match="needs a simulated fleet"):
        backend.clear_faults()
