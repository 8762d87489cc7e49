"""accelpool.native: lazy ctypes loading, typed cached functions, vendor errors."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, ClassVar

import pytest

from accelpool.native import NativeError, NativeLibrary, c_text
from accelpool.testing import FakeLib


class AcmeError(NativeError):
    error_names: ClassVar = {3: ("ACME_BUSY", "the device is busy")}
    unknown_name = "acme error {code}"


class AcmeMissing(Exception):
    pass


class Acme(NativeLibrary):
    library_name = "libacme-accelpool-test.so"
    default_locations = ("libacme-accelpool-test.so", "/nonexistent/libacme.so")
    env_var = "ACCELPOOL_TEST_ACME_LIBRARY"
    signatures: ClassVar = {
        "acme_init": (ctypes.c_int, []),
        "acme_count": (ctypes.c_int, [ctypes.POINTER(ctypes.c_int)]),
        "acme_name": (ctypes.c_char_p, [ctypes.c_int]),
    }

    def not_found(self, detail: str) -> Exception:
        return AcmeMissing(f"acme not found{detail}")

    def missing_function(self, name: str, library: str) -> Exception:
        return AcmeMissing(f"{library} has no {name}")

    def failed(self, code: int, name: str) -> Exception:
        return AcmeError(code, name)


class AcmeImpl:
    def __init__(self) -> None:
        self.rc = 0

    def acme_init(self) -> int:
        return self.rc

    def acme_count(self, out: Any) -> int:
        out.contents.value = 4
        return 0

    def acme_name(self, index: int) -> bytes:
        return b"acme-%d" % index


def test_functions_are_looked_up_once_and_typed_from_the_signatures() -> None:
    lib = FakeLib(AcmeImpl())
    acme = Acme(lib=lib)
    assert lib.lookups == []
    count = ctypes.c_int(0)
    acme.call("acme_count", ctypes.pointer(count))
    acme.call("acme_count", ctypes.pointer(count))
    assert count.value == 4
    assert lib.lookups == ["acme_count"]
    assert acme.function("acme_name")(2) == b"acme-2"
    assert acme.function("acme_name").restype is ctypes.c_char_p
    assert acme.function("acme_count").argtypes == [ctypes.POINTER(ctypes.c_int)]


def test_a_nonzero_code_raises_the_vendor_error_with_its_name() -> None:
    impl = AcmeImpl()
    acme = Acme(lib=FakeLib(impl))
    impl.rc = 3
    with pytest.raises(AcmeError) as err:
        acme.call("acme_init")
    assert (err.value.code, err.value.name, err.value.function) == (3, "ACME_BUSY", "acme_init")
    assert err.value.vendor_message == "acme_init: ACME_BUSY: the device is busy"
    assert str(err.value) == "acme_init returned 3 (ACME_BUSY: the device is busy)"
    impl.rc = 99
    with pytest.raises(AcmeError, match=r"acme error 99: unknown error"):
        acme.call("acme_init")


def test_a_missing_function_names_the_library_and_the_function() -> None:
    acme = Acme(lib=FakeLib(object()))
    with pytest.raises(AcmeMissing, match=r"libacme-accelpool-test\.so has no acme_init"):
        acme.call("acme_init")


def test_candidates_come_from_path_then_variable_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(Acme.env_var, raising=False)
    assert Acme().candidates() == list(Acme.default_locations)
    monkeypatch.setenv(Acme.env_var, "/opt/acme/libacme.so")
    assert Acme().candidates() == ["/opt/acme/libacme.so"]
    assert Acme(path="/x/libacme.so").candidates() == ["/x/libacme.so"]


def test_an_absent_library_is_not_found_without_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(Acme.env_var, raising=False)
    with pytest.raises(AcmeMissing) as err:
        Acme().load()
    assert str(err.value) == "acme not found"


def test_a_library_that_will_not_load_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "libacme.so"
    broken.write_text("not an ELF file\n")
    acme = Acme(path=str(broken))
    with pytest.raises(AcmeMissing, match=r"acme not found \(.+\)"):
        acme.load()
    assert acme.path == str(broken)


def test_a_real_library_loads_and_its_functions_are_typed() -> None:
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no C library to load here")

    class LibC(Acme):
        signatures: ClassVar = {"abs": (ctypes.c_int, [ctypes.c_int])}

    libc = LibC(path=name)
    assert libc.function("abs")(-7) == 7
    assert libc.path == name


def test_c_text_stops_at_the_first_nul() -> None:
    assert c_text(b"910B3\0garbage") == "910B3"
    assert c_text(b"  v1 \0") == "v1"
    assert c_text(b"\xff\0") == "\ufffd"


def test_from_option_takes_a_path_or_a_loaded_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(Acme.env_var, raising=False)
    assert Acme.from_option("/x/libacme.so").candidates() == ["/x/libacme.so"]
    lib = FakeLib(AcmeImpl())
    acme = Acme.from_option(lib)
    assert isinstance(acme, Acme) and acme.load() is lib
    assert Acme.from_option(None).candidates() == list(Acme.default_locations)
