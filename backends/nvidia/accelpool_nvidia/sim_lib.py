"""What pynvml sees as ``nvmlLib``: one callable per NVML C function, over the simulator.

:class:`NvmlLib` counts each call, checks initialisation, pins one state snapshot for
the call and runs the fault hook; :class:`_Impl` holds the C functions, one module
per area (:mod:`~accelpool_nvidia.sim_api_device`, :mod:`~accelpool_nvidia.sim_api_mig`,
:mod:`~accelpool_nvidia.sim_api_vgpu`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.sim_abi import _Fail, _val
from accelpool_nvidia.sim_api_device import _DeviceApi
from accelpool_nvidia.sim_api_mig import _MigApi
from accelpool_nvidia.sim_api_vgpu import _VgpuApi

if TYPE_CHECKING:
    from accelpool_nvidia.simulator import NvmlSimulator


class NvmlLib:
    """What pynvml sees as ``nvmlLib``: one attribute per NVML C function.

    Unknown symbols raise ``AttributeError`` (pynvml turns that into
    FUNCTION_NOT_FOUND, as with an older driver). Every call is counted in
    ``simulator.calls`` and goes through the fault hook.
    """

    _ALWAYS = frozenset(
        {"nvmlInit", "nvmlInit_v2", "nvmlInitWithFlags", "nvmlErrorString", "nvmlShutdown"}
    )

    def __init__(self, sim: NvmlSimulator) -> None:
        self._sim = sim
        self._impl = _Impl(sim)

        # pynvml sets ``restype`` on this one: it must be a plain function, not a method.
        def nvmlErrorString(code: Any) -> bytes:
            sim.calls["nvmlErrorString"] += 1
            return rc.text(_val(code)).encode()

        self.nvmlErrorString = nvmlErrorString

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        impl = getattr(self._impl, name, None)
        if impl is None or not name.startswith("nvml"):
            raise AttributeError(name)
        sim = self._sim
        always = name in self._ALWAYS

        def call(*args: Any) -> int:
            sim.calls[name] += 1
            if not always and sim._init_count <= 0:
                return rc.UNINITIALIZED
            outer = sim._pinned is None
            if outer:
                sim._pinned = sim.snapshot()  # one read of the state per call
            try:
                code = sim._fault(name, args)
                if code is not None:
                    return code
                result: int = impl(*args)
                return result
            except _Fail as e:
                return e.code
            finally:
                if outer:
                    sim._pinned = None

        call.__name__ = name
        setattr(self, name, call)  # resolve once per name
        return call


class _Impl(_DeviceApi, _MigApi, _VgpuApi):
    """The NVML C functions; each returns an nvmlReturn_t or raises :class:`_Fail`."""

    def __init__(self, sim: NvmlSimulator) -> None:
        self.s = sim
