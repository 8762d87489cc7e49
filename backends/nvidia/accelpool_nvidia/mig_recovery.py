"""Journalled MIG creates and destroys, and the collection of half-made partitions.

A MIG create is two NVML steps (GPU instance, then compute instance); a creator killed
between them leaves a bare GPU instance holding capacity. Each create is recorded in
the :class:`~accelpool_nvidia.journal.CreateJournal` (a destroy too: compute instance,
then GPU instance), and what a dead creator or destroyer left is destroyed before the
next create on that GPU or by ``collect_garbage``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pynvml

from accelpool.errors import InvalidRequest
from accelpool.types import DeviceInfo, PartitionInfo
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.discovery import log
from accelpool_nvidia.mig_reads import _STALE
from accelpool_nvidia.vgpu import VgpuPartitions

if TYPE_CHECKING:
    from accelpool_nvidia.journal import CreateJournal
    from accelpool_nvidia.profile_types import _GiProfile


class MigRecovery(VgpuPartitions):
    """MIG creates recorded in the create journal, and what killed creators left behind."""

    #: set to None by :class:`~accelpool_nvidia.discovery.NvmlDiscovery`; opened on first use
    _journal_obj: CreateJournal | None

    def _create_mig(
        self,
        device: DeviceInfo,
        h: Any,
        prof: _GiProfile,
        profiles: Sequence[_GiProfile],
        placement: int | None,
    ) -> PartitionInfo:
        dev_id = self._dev_id(device)
        action = f"creating partition {prof.name} on {dev_id}"
        starts = [s for s, _ in prof.placements]
        if placement is not None and placement not in starts:
            raise InvalidRequest(
                f"{prof.name} cannot be placed at {placement} on {dev_id}; "
                f"its placements are {', '.join(map(str, starts))}"
            )
        journal = self._journal()
        if journal.has_abandoned():
            # Capacity a killed creator left half-made on this GPU is freed first.
            self._collect(journal, only_gpu=device.native_id)
        token = journal.begin(device.native_id, prof.id)
        try:
            gi = self._make_gpu_instance(h, prof, profiles, placement, action)
            try:
                journal.set_gpu_instance(token, pynvml.nvmlGpuInstanceGetInfo(gi).id)
            except (pynvml.NVMLError, OSError) as e:  # gc can still match it by profile
                log.debug("could not record the new GPU instance: %s", e)
            return self._finish_mig(device, h, prof, gi, action)
        finally:
            try:
                journal.finish(token)
            except OSError as e:  # the partition is made; a stale entry only waits for gc
                log.warning("could not update the record of MIG creates: %s", e)

    @contextlib.contextmanager
    def _destroying(self, gpu: str, gi: Any) -> Iterator[None]:
        # A destroy is two NVML steps too (compute instance, then GPU instance): it is
        # recorded like a create, so a bare GPU instance that a destroyer killed between
        # them leaves is collected the same way.
        try:
            info = pynvml.nvmlGpuInstanceGetInfo(gi)
        except pynvml.NVMLError:  # gone or stale: the destroy itself says so
            yield
            return
        journal = self._journal()
        token = journal.begin(gpu, int(info.profileId), int(info.id))
        try:
            yield
        finally:
            try:
                journal.finish(token)
            except OSError as e:  # a stale entry only waits for gc
                log.warning("could not update the record of MIG changes: %s", e)

    # -- half-made partitions (a creator killed between the GI and CI steps) ------------
    def _journal(self) -> CreateJournal:
        if self._journal_obj is None:
            from accelpool_nvidia.journal import CreateJournal

            sim = self.context.sim
            self._journal_obj = CreateJournal(sim.state if sim is not None else None)
        return self._journal_obj

    def collect_garbage(self) -> Sequence[str]:
        journal = self._journal()
        if not journal.has_abandoned():
            return []
        with self._nvml("removing MIG partitions that killed creators left half-made"):
            return self._collect(journal)

    def _bare_gpu_instances(self, h: Any, device: DeviceInfo) -> dict[int, tuple[Any, int]]:
        """GPU instance id -> (handle, profile id) of those without compute instances
        (a MIG-backed vGPU's instance has none either, but is not bare)."""
        profiles = self._gi_profiles(h, device)
        migs = self._mig_devices(h)
        taken = {gi_id for gi_id, _ in migs}
        if self._is_vgpu_host(device):
            taken |= set(self._vgpu_gis(h))
        return {
            info.id: (gi, info.profileId)
            for gi, info in self._layout(h, profiles)
            if info.id not in taken
        }

    def _collect(self, journal: CreateJournal, only_gpu: str | None = None) -> list[str]:
        """Destroy GPU instances that dead creators left bare; drop their records.

        Runs under the record's lock, so no live creator records a step meanwhile; a
        bare instance that a live creator of the same GPU and profile may still be
        finishing is left alone until that creator is done.
        """
        done: list[str] = []
        with journal.locked():
            entries = journal.entries()
            dead = [e for e in entries if not e.alive() and only_gpu in (None, e.gpu)]
            if not dead:
                return done
            live = [e for e in entries if e.alive()]
            waiting = {(e.gpu, e.profile) for e in live if e.gi is None}
            owned = {(e.gpu, e.gi) for e in live if e.gi is not None}
            if not all(any(d.native_id == e.gpu for d in self._known.values()) for e in dead):
                self.devices()  # learn the GPUs this backend has not listed yet
            known = {d.native_id: d for d in self._known.values()}
            finished: set[str] = set()
            for gpu in sorted({e.gpu for e in dead}):
                mine = [e for e in dead if e.gpu == gpu]
                device = known.get(gpu)
                try:
                    h = pynvml.nvmlDeviceGetHandleByUUID(gpu)
                except pynvml.NVMLError as err:
                    if err.value == rc.NOT_FOUND:  # not on this host (any more)
                        finished.update(e.token for e in mine)
                    continue  # a lost GPU keeps its records until it is back
                if device is None or not self._mig_on(h):
                    finished.update(e.token for e in mine)
                    continue
                bare = self._stable(
                    functools.partial(self._bare_gpu_instances, h, device),
                    f"reading GPU instances of nvidia:{gpu}",
                )
                for e in mine:
                    if e.gi is not None:
                        victims = [e.gi] if bare.get(e.gi, (None, -1))[1] == e.profile else []
                    elif (gpu, e.profile) in waiting:
                        continue  # a live creator of this shape may own it: decide later
                    else:
                        victims = [
                            g
                            for g, (_, p) in bare.items()
                            if p == e.profile and (gpu, g) not in owned
                        ]
                    for g in victims:
                        handle, _ = bare.pop(g)
                        try:
                            pynvml.nvmlGpuInstanceDestroy(handle)
                        except pynvml.NVMLError_InUse:
                            continue  # it got its compute instance after all
                        except _STALE:
                            continue  # destroyed by someone else meanwhile
                        done.append(
                            f"removed GPU instance {g} on nvidia:{gpu}, left half-made by "
                            f"process {e.pid}"
                        )
                    finished.add(e.token)
            journal.forget(finished)
        for line in done:
            log.warning("%s", line)
        return done
