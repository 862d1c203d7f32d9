"""The per-user view of GPU status: the user's granted GPUs and the user's own processes.

On JupyterHub each user's server gets a GPU grant from the spawner (see
:mod:`jupyter_gpuenv.gpu.grant`, a :class:`~jupyter_gpuenv.gpu_set.GpuSet`); GPU status
then shows only those GPUs (or MIG slices)
and only processes of that user, unless the admin sets
``c.GpuEnv.show_all_gpu_processes``. Hidden processes still count in a GPU's used memory;
``hidden_processes`` says how many there were so the numbers add up for the reader.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..gpu_set import GpuSet
from ..kernel.gpu_snapshot import GpuDevice, GpuSnapshot


@dataclass(frozen=True)
class GpuView:
    """What one server's user may see. ``grant.is_all`` and ``show_all`` see everything."""

    grant: GpuSet = GpuSet()
    show_all: bool = False

    def apply(self, snapshot: GpuSnapshot) -> GpuSnapshot:
        """A filtered copy; the sampler's own snapshot is left as it was."""
        if not snapshot.available or (self.show_all and self.grant.is_all):
            return snapshot
        view = copy.copy(snapshot)
        view.gpus = []
        for gpu in snapshot.gpus:
            visible: GpuDevice | None = gpu if self.show_all else _own_processes(gpu)
            if visible is not None and not self.grant.is_all:
                visible = _granted_part(visible, self.grant)
            if visible is not None:
                view.gpus.append(visible)
        view.gpu_count = len(view.gpus)
        if not view.gpus:
            view.available = False
            view.state = "unavailable"
            view.reason = self._empty_reason()
        return view

    def _empty_reason(self) -> str:
        where = f" ({self.grant.source})" if self.grant.source else ""
        if self.grant.is_none:
            return f"no GPU is granted to you on this server{where}"
        names = ", ".join(self.grant.ids or ())
        return f"none of the GPUs granted to you{where}: {names} exist on this machine"


def _own_processes(gpu: GpuDevice) -> GpuDevice:
    shown = [p for p in gpu.processes if p.own]
    if len(shown) == len(gpu.processes):
        return gpu
    out = copy.copy(gpu)
    out.processes = shown
    out.hidden_processes = gpu.hidden_processes + len(gpu.processes) - len(shown)
    return out


def _granted_part(gpu: GpuDevice, grant: GpuSet) -> GpuDevice | None:
    """The whole GPU when granted; only its granted MIG slices when those are named."""
    if grant.allows(gpu.index, gpu.uuid):
        return gpu
    migs = [m for m in gpu.mig_devices if grant.allows(None, m.uuid)]
    if not migs:
        return None
    uuids = {m.uuid for m in migs}
    out = copy.copy(gpu)
    out.mig_devices = migs
    out.processes = [p for p in gpu.processes if p.mig_device_uuid in uuids]
    out.hidden_processes = gpu.hidden_processes + len(gpu.processes) - len(out.processes)
    return out
