"""The OpenCL backend: every device pyopencl sees; partitions are sub-devices.

pyopencl is imported in :meth:`OpenCLBackend.probe`, never at import time, so
loading this module costs nothing until the backend is used. Each device's
properties are read once, at probe, and cached.

Partitions are OpenCL sub-devices (device fission, ``clCreateSubDevices``) and
have scope ``process``: they live in the backend instance that created them (one
:func:`accelpool.discover`), are invisible to other processes, and are released
when destroyed or when the inventory closes. The profile model is described in
:mod:`accelpool_opencl.profiles`.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.spi import (
    Backend,
    BackendContext,
    Capabilities,
    Capability,
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Target,
)
from accelpool_opencl import profiles as prof
from accelpool_opencl.errors import cl_error

if TYPE_CHECKING:
    import pyopencl

#: Prefix of every attribute this backend reports (Kubernetes DRA style).
ATTR = "opencl.khronos.org/"

#: Short, stable names of well-known platforms (their ``CL_PLATFORM_NAME``).
PLATFORM_SLUGS = {
    "Portable Computing Language": "pocl",
    "NVIDIA CUDA": "nvidia",
    "AMD Accelerated Parallel Processing": "amd",
    "Intel(R) OpenCL": "intel",
    "Intel(R) CPU Runtime for OpenCL(TM) Applications": "intel-cpu",
    "Intel(R) OpenCL Graphics": "intel-gpu",
    "Intel(R) OpenCL HD Graphics": "intel-gpu",
    "Intel(R) FPGA Emulation Platform for OpenCL(TM)": "intel-fpga-emu",
    "Apple": "apple",
    "Clover": "clover",
    "rusticl": "rusticl",
    "Oclgrind": "oclgrind",
}

#: cl_device_type bits, most specific first.
DEVICE_TYPES = ((1 << 1, "CPU"), (1 << 2, "GPU"), (1 << 3, "ACCELERATOR"), (1 << 4, "CUSTOM"))
CL_DEVICE_TYPE_CPU = 1 << 1

#: PoCL CPU drivers, longest first: PoCL names a CPU device "<driver>-<CPU model>".
POCL_CPU_DRIVERS = ("cpu-minimal", "cpu-tbb", "pthread", "basic", "cpu", "tbb")
#: PoCL variables that cap the CPU drivers' compute units (3.x, then 4.x and later).
POCL_CU_VARS = ("POCL_MAX_PTHREAD_COUNT", "POCL_CPU_MAX_CU_COUNT")

# Partition ids are unique within the process, even across backend instances.
_SUB_IDS = itertools.count(1)


@dataclass(frozen=True)
class OpenCLHandle:
    """A pyopencl context over a target's device(s) and a queue on each.

    For a device or an ``equally-N`` partition ``devices`` has one entry; for a
    ``counts-`` partition one per sub-device. ``queue`` is ``queues[0]``.
    """

    context: pyopencl.Context
    devices: tuple[pyopencl.Device, ...]
    queues: tuple[pyopencl.CommandQueue, ...]

    @property
    def queue(self) -> pyopencl.CommandQueue:
        return self.queues[0]


@dataclass
class _Device:
    info: DeviceInfo
    cl: Any  # pyopencl.Device
    fission: prof.Fission
    is_cpu: bool
    pocl_driver: str | None


@dataclass
class _Partition:
    info: PartitionInfo
    spec: prof.ProfileSpec
    cl: tuple[Any, ...]  # the pyopencl sub-devices


def _slug(name: str) -> str:
    if name in PLATFORM_SLUGS:
        return PLATFORM_SLUGS[name]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].strip("-")
    return slug or "platform"


def _type_name(bits: int) -> str:
    names = [n for bit, n in DEVICE_TYPES if bits & bit]
    return ",".join(names) if names else "DEFAULT"


def _version_number(text: str) -> str:
    m = re.match(r"OpenCL (\d+\.\d+)", text)
    return m.group(1) if m else text


class OpenCLBackend(Backend):
    """accelpool backend over pyopencl: devices, sub-device partitions, contexts."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._lock = threading.RLock()
        self._devices: dict[str, _Device] = {}
        self._parts: dict[str, _Partition] = {}
        self._handles: dict[str, OpenCLHandle] = {}
        self._probed = False

    # -- discovery ----------------------------------------------------------
    def probe(self) -> str:
        if self.context.sim is not None:
            raise BackendUnavailable(
                "the OpenCL backend has no simulator; it runs on real OpenCL platforms "
                "(pocl-binary-distribution gives a CPU device anywhere)"
            )
        try:
            import pyopencl as cl
        except ImportError as e:
            raise BackendUnavailable(
                f"pyopencl cannot be imported ({e}); install pyopencl"
            ) from None
        try:
            platforms = cl.get_platforms()
        except cl.Error as e:
            if getattr(e, "code", None) == -1001:
                raise BackendUnavailable(
                    "no OpenCL platform found (install an ICD such as pocl-binary-distribution)",
                    vendor_code=-1001,
                    vendor_message=str(e),
                ) from None
            raise cl_error(e, "listing OpenCL platforms") from None
        if not platforms:
            raise BackendUnavailable(
                "no OpenCL platform found (install an ICD such as pocl-binary-distribution)"
            )
        self._discover(cl, platforms)
        self._probed = True
        return str(cl.VERSION_TEXT)

    def _discover(self, cl: Any, platforms: Sequence[Any]) -> None:
        seen: dict[str, int] = {}
        index = 0
        for platform in platforms:
            try:
                pname = str(platform.name).strip()
                pversion = str(platform.version).strip()
                devices = platform.get_devices()
            except cl.Error as e:
                if getattr(e, "code", None) == -1:  # CL_DEVICE_NOT_FOUND: a platform, no devices
                    continue
                raise cl_error(e, f"listing devices of OpenCL platform {platform.name!r}") from None
            slug = _slug(pname)
            seen[slug] = seen.get(slug, 0) + 1
            if seen[slug] > 1:  # a second platform of one kind keeps its own prefix
                slug = f"{slug}{seen[slug]}"
            for i, dev in enumerate(devices):
                native_id = f"{slug}-{i}"
                self._devices[native_id] = self._read_device(
                    cl, dev, native_id, index, pname, pversion
                )
                index += 1

    def _read_device(
        self, cl: Any, dev: Any, native_id: str, index: int, platform: str, pversion: str
    ) -> _Device:
        try:
            name = str(dev.name).strip()
            vendor = str(dev.vendor).strip()
            version = str(dev.version).strip()
            cus = int(dev.max_compute_units)
            mem = int(dev.global_mem_size)
            dtype = int(dev.type)
            driver = str(dev.driver_version).strip()
        except cl.Error as e:
            raise cl_error(e, f"reading OpenCL device {native_id}") from None
        # Optional facts: a device without fission may refuse these queries.
        try:
            props = [int(p) for p in dev.partition_properties]
            max_sub = int(dev.partition_max_sub_devices)
        except cl.Error:
            props, max_sub = [], 0
        try:
            c_version = str(dev.opencl_c_version).strip()
        except cl.Error:
            c_version = ""
        fission = prof.Fission.of(cus, props, max_sub)
        is_cpu = bool(dtype & CL_DEVICE_TYPE_CPU)
        pocl_driver = None
        if platform == "Portable Computing Language" and is_cpu:
            pocl_driver = next((d for d in POCL_CPU_DRIVERS if name.startswith(d + "-")), None)
        attributes: dict[str, str | int | bool] = {
            ATTR + "version": _version_number(version),
            ATTR + "versionString": version,
            ATTR + "driverVersion": driver,
            ATTR + "deviceType": _type_name(dtype),
            ATTR + "platform": platform,
            ATTR + "platformVersion": pversion,
            ATTR + "partitionProperties": fission.property_names(),
            ATTR + "maxSubDevices": max_sub,
        }
        if c_version:
            attributes[ATTR + "openclCVersion"] = c_version
        info = DeviceInfo(
            native_id=native_id,
            index=index,
            vendor=vendor,
            model=name,
            memory_bytes=mem,
            compute_units=cus,
            attributes=attributes,
        )
        return _Device(info, dev, fission, is_cpu, pocl_driver)

    def capabilities(self) -> Capabilities:
        return Capabilities.of(
            [
                Capability.DISCOVERY,
                Capability.PARTITION,
                Capability.PARTITION_SUBDEVICE,
                Capability.VISIBILITY,
                Capability.SESSION_ONNX,
            ],
            unsupported=[
                Capability.PARTITION_DEVICE_SCOPE,
                Capability.PARTITION_MIG,
                Capability.PARTITION_VGPU,
                Capability.PARTITION_VNPU,
                Capability.PARTITION_MIM,
                Capability.PARTITION_SMLU,
                Capability.TELEMETRY,
                Capability.FAULT_INJECTION,
                Capability.MIG_MODE,
            ],
        )

    def devices(self) -> Sequence[DeviceInfo]:
        if not self._probed:
            self.probe()
        return [d.info for d in sorted(self._devices.values(), key=lambda d: d.info.index)]

    def _device(self, device: DeviceInfo | str) -> _Device:
        native_id = device if isinstance(device, str) else device.native_id
        found = self._devices.get(native_id)
        if found is None:
            known = ", ".join(self._devices) or "none"
            raise NotFound(f"no OpenCL device {native_id!r} (devices: {known})")
        return found

    # -- partitions -----------------------------------------------------------
    def _used(self, device_id: str) -> set[int]:
        used: set[int] = set()
        for p in self._parts.values():
            if p.info.device_native_id == device_id and p.info.placement is not None:
                pl = p.info.placement
                used.update(range(pl.start, pl.start + pl.size))
        return used

    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        dev = self._device(device)
        cus = dev.fission.compute_units
        with self._lock:
            used = self._used(dev.info.native_id)
        out = []
        for spec in prof.listed(dev.fission):
            size = spec.compute_units
            out.append(
                PartitionProfile(
                    name=spec.name,
                    kind="subdevice",
                    memory_bytes=dev.info.memory_bytes,
                    compute_units=size,
                    max_count=cus // size,
                    placements=tuple(Placement(s, size) for s in prof.aligned_starts(size, cus)),
                    available=len(prof.free_starts(size, cus, used)),
                    attributes=self._spec_attributes(dev, spec),
                )
            )
        return out

    @staticmethod
    def _spec_attributes(dev: _Device, spec: prof.ProfileSpec) -> dict[str, str | int | bool]:
        kind = prof.PARTITION_NAMES[spec.cl_properties(dev.fission)[0]]
        return {
            ATTR + "memoryShared": True,
            ATTR + "partitionType": kind,
            ATTR + "subDevices": len(spec.sizes),
            ATTR + "subDeviceComputeUnits": "+".join(str(s) for s in spec.sizes),
        }

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        dev = self._device(device)
        with self._lock:
            parts = [p.info for p in self._parts.values()]
        return sorted(
            (p for p in parts if p.device_native_id == dev.info.native_id),
            key=lambda p: (p.placement.start if p.placement else 0, p.native_id),
        )

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        dev = self._device(device)
        ref = f"{self.name}:{dev.info.native_id}"
        if not dev.fission.partitionable:
            raise UnsupportedOperation(
                f"OpenCL device {ref} cannot be split into sub-devices "
                f"(partition properties: {dev.fission.property_names()})"
            )
        spec = prof.parse(profile, dev.fission, ref)
        size, cus = spec.compute_units, dev.fission.compute_units
        starts = prof.aligned_starts(size, cus)
        if placement is not None and placement not in starts:
            raise InvalidRequest(
                f"profile {spec.name} cannot start at compute unit {placement} on {ref}; "
                f"valid placements: {', '.join(map(str, starts))}"
            )
        import pyopencl as cl

        with self._lock:
            free = prof.free_starts(size, cus, self._used(dev.info.native_id))
            if placement is not None:
                if placement not in free:
                    raise InsufficientCapacity(
                        f"compute units {placement}-{placement + size - 1} of {ref} are taken "
                        f"by another partition; destroy it or pick a free placement"
                    )
                start = placement
            elif not free:
                raise InsufficientCapacity(
                    f"no room for {spec.name} on {ref}: "
                    f"{len(self._used(dev.info.native_id))} of {cus} compute units are in "
                    f"partitions; destroy some first"
                )
            else:
                # From the top: low aligned ranges stay whole for larger profiles.
                start = free[-1]
            try:
                subs = dev.cl.create_sub_devices(spec.cl_properties(dev.fission))
            except cl.Error as e:
                raise cl_error(e, f"creating sub-devices {spec.name} of {ref}") from None
            subs = list(subs)
            if spec.family == "equally":
                subs = subs[:1]  # EQUALLY makes every piece; the partition is the first
            got = [int(s.max_compute_units) for s in subs]
            if got != list(spec.sizes):
                raise AccelPoolError(
                    f"the OpenCL driver made sub-devices of {got} compute units for "
                    f"{spec.name} on {ref}, not {list(spec.sizes)}; report it to the vendor"
                )
            native_id = f"{dev.info.native_id}.sub{next(_SUB_IDS)}"
            attributes = self._spec_attributes(dev, spec)
            info = PartitionInfo(
                native_id=native_id,
                device_native_id=dev.info.native_id,
                profile=spec.name,
                kind="subdevice",
                memory_bytes=dev.info.memory_bytes,
                compute_units=size,
                placement=Placement(start, size),
                scope="process",
                attributes=attributes,
            )
            self._parts[native_id] = _Partition(info, spec, tuple(subs))
            return info

    def destroy_partition(self, partition: PartitionInfo) -> None:
        with self._lock:
            part = self._parts.pop(partition.native_id, None)
            if part is None:
                raise NotFound(
                    f"no OpenCL partition {self.name}:{partition.native_id}: already destroyed, "
                    "or made by another process or inventory (sub-devices are process-scoped)"
                )
            self._handles.pop(partition.native_id, None)
        # Dropping the last references makes pyopencl call clReleaseDevice on each
        # sub-device (and release the context and queues made on them).
        del part

    # -- running work -----------------------------------------------------------
    def _cl_devices(self, target: Target) -> tuple[Any, ...]:
        if isinstance(target, PartitionInfo):
            with self._lock:
                part = self._parts.get(target.native_id)
            if part is None:
                raise NotFound(
                    f"no OpenCL partition {self.name}:{target.native_id}: destroyed, or made "
                    "by another inventory"
                )
            return part.cl
        return (self._device(target).cl,)

    def handle(self, target: Target) -> OpenCLHandle:
        """A context over ``target``'s device or sub-devices, with a queue on each.

        Made once per target and kept until the partition is destroyed or the
        backend closed.
        """
        devices = self._cl_devices(target)
        with self._lock:
            cached = self._handles.get(target.native_id)
            if cached is not None:
                return cached
            import pyopencl as cl

            try:
                context = cl.Context(list(devices))
                queues = tuple(cl.CommandQueue(context, d) for d in devices)
            except cl.Error as e:
                raise cl_error(e, f"creating an OpenCL context on {target.native_id}") from None
            made = OpenCLHandle(context, tuple(devices), queues)
            self._handles[target.native_id] = made
            return made

    def context_and_queue(self, target: Target) -> tuple[pyopencl.Context, pyopencl.CommandQueue]:
        """A pyopencl context and command queue on ``target`` (a device or a partition).

        For a partition the context holds its sub-device(s) and the queue is on the
        first; :meth:`handle` gives a queue on each.
        """
        made = self.handle(target)
        return made.context, made.queue

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        dev = self._device(target.device_native_id if isinstance(target, PartitionInfo) else target)
        if isinstance(target, PartitionInfo):
            self._cl_devices(target)  # NotFound once destroyed
        if not dev.is_cpu:
            raise UnsupportedOperation(
                f"OpenCL device {self.name}:{dev.info.native_id} is a "
                f"{dev.info.attributes[ATTR + 'deviceType']} device; onnxruntime has no "
                "OpenCL execution provider, so only CPU devices run ONNX models here"
            )
        # The CPU provider with one thread per compute unit of the target.
        return OnnxPlacement(
            (ExecutionProvider("CPUExecutionProvider"),),
            intra_op_num_threads=target.compute_units,
        )

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        """PoCL's own variables: its CPU driver only, capped to the targets' compute units.

        Other vendors' OpenCL runtimes have no such variables, so their devices raise
        :class:`UnsupportedOperation`.
        """
        if not targets:
            raise InvalidRequest("name at least one device or partition to make visible")
        ids = [t.native_id for t in targets]
        if len(set(ids)) != len(ids):
            raise InvalidRequest(f"targets repeat: {', '.join(ids)}")
        device_ids = {
            t.device_native_id if isinstance(t, PartitionInfo) else t.native_id for t in targets
        }
        if len(device_ids) > 1:
            raise UnsupportedOperation(
                "PoCL's visibility variables describe one CPU device; "
                f"targets span {', '.join(sorted(device_ids))}"
            )
        dev = self._device(device_ids.pop())
        if dev.pocl_driver is None:
            raise UnsupportedOperation(
                f"OpenCL device {self.name}:{dev.info.native_id} "
                f"({dev.info.attributes[ATTR + 'platform']}) has no visibility variable; "
                "only PoCL CPU devices do"
            )
        if any(isinstance(t, DeviceInfo) for t in targets):
            cus = dev.info.compute_units
        else:
            for t in targets:
                self._cl_devices(t)  # NotFound for destroyed partitions
            cus = min(dev.info.compute_units, sum(t.compute_units for t in targets))
        env = {"POCL_DEVICES": dev.pocl_driver}
        env.update({var: str(cus) for var in POCL_CU_VARS})
        return env

    def close(self) -> None:
        with self._lock:
            self._handles.clear()
            self._parts.clear()
