"""Which of the host's GPUs a brokered kernel may have: ids as NVML names them, held by
one kernel at a time.

A request may name a GPU by its index, its UUID in any case, with or without ``GPU-``,
or a unique prefix; a MIG device by its ``MIG-`` UUID or as ``GPU-<uuid>/<gi>/<ci>``
(also ``MIG-GPU-<uuid>/<gi>/<ci>``, the older drivers' spelling). Each is turned into the
one UUID NVML reports, so two spellings of one device never pass as two free devices.
A MIG device is a slice of its GPU: a kernel holding a slice makes the whole GPU busy,
and a kernel holding the whole GPU makes every slice of it busy. Two slices of one GPU
are separate devices. Plain data in and out; the inventory comes from an NVML sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import PolicyViolation
from ..kernel.gpu_snapshot import GpuSnapshot


@dataclass(frozen=True)
class HostDevice:
    """A whole GPU (``gpu`` is its own UUID) or a MIG device on the GPU ``gpu``."""

    uuid: str
    gpu: str
    gpu_instance: int | None = None
    compute_instance: int | None = None

    @property
    def is_mig(self) -> bool:
        return self.uuid != self.gpu


@dataclass(frozen=True)
class HostGpus:
    """The host's GPUs in NVML index order, and the MIG devices on them."""

    devices: tuple[HostDevice, ...]

    @classmethod
    def whole(cls, uuids: Iterable[str]) -> HostGpus:
        """GPUs without MIG devices (a host known by its UUIDs only)."""
        return cls(tuple(HostDevice(uuid, uuid) for uuid in uuids))

    @classmethod
    def of_snapshot(cls, snapshot: GpuSnapshot) -> HostGpus | None:
        """The GPUs and MIG devices of an NVML sample; None when it saw no GPU."""
        if not snapshot.available or not snapshot.gpus:
            return None
        devices: list[HostDevice] = []
        for gpu in snapshot.gpus:
            uuid = gpu.uuid or str(gpu.index)
            devices.append(HostDevice(uuid, uuid))
            devices += [
                HostDevice(mig.uuid, uuid, mig.gpu_instance_id, mig.compute_instance_id)
                for mig in gpu.mig_devices
                if mig.uuid
            ]
        return cls(tuple(devices))

    @property
    def gpus(self) -> list[str]:
        """The whole GPUs' UUIDs, by index."""
        return [d.uuid for d in self.devices if not d.is_mig]

    def resolve(self, asked: str) -> str:
        """The host's UUID of the device ``asked`` names; refused when it names none or
        several (the refusal names the caller's text only)."""
        text = asked.strip()
        gpus = self.gpus
        if text.isdigit():
            if int(text) < len(gpus):
                return gpus[int(text)]
            raise PolicyViolation(
                f"GPU {asked!r}: this host has {len(gpus)} GPU(s), counted from 0."
            )
        wanted = text.lower()
        exact = self._named(wanted, self.devices)
        if exact is None and wanted.count("/") == 2:
            exact = self._slice(asked, wanted)
        if exact is not None:
            return exact
        found = [d.uuid for d in self.devices if wanted and _spelled(d.uuid, wanted, prefix=True)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise PolicyViolation(f"GPU {asked!r} is not one of this host's GPUs.")
        raise PolicyViolation(f"GPU {asked!r} names more than one of this host's GPUs.")

    def _named(self, wanted: str, devices: Iterable[HostDevice]) -> str | None:
        for device in devices:
            if _spelled(device.uuid, wanted, prefix=False):
                return device.uuid
        return None

    def _slice(self, asked: str, wanted: str) -> str | None:
        """``[MIG-]GPU-<uuid>/<gi>/<ci>``: the MIG device of that GPU with those ids."""
        gpu_text, gi, ci = wanted.removeprefix("mig-").split("/")
        if not (gi.isdigit() and ci.isdigit()):
            return None
        parent = self.resolve(gpu_text) if gpu_text else None
        for device in self.devices:
            if (
                device.is_mig
                and device.gpu == parent
                and (device.gpu_instance, device.compute_instance) == (int(gi), int(ci))
            ):
                return device.uuid
        raise PolicyViolation(f"GPU {asked!r} is not one of this host's MIG devices.")

    def gpu_of(self, uuid: str) -> str:
        """The GPU a device is or lies on (an id not on this host: itself)."""
        for device in self.devices:
            if device.uuid.lower() == uuid.lower():
                return device.gpu
        return uuid

    def shares_hardware(self, one: str, other: str) -> bool:
        """Whether two devices cannot both be handed out: the same device, or a GPU and
        a MIG device on it. Two MIG devices of one GPU are separate."""
        if one.lower() == other.lower():
            return True
        gpu_one, gpu_other = self.gpu_of(one), self.gpu_of(other)
        whole_one, whole_other = gpu_one.lower() == one.lower(), gpu_other.lower() == other.lower()
        return gpu_one.lower() == gpu_other.lower() and (whole_one or whole_other)

    def busy(self, asked: Iterable[str], taken: Iterable[str]) -> list[str]:
        """The devices of ``asked`` (host UUIDs) that share hardware with a taken one."""
        held = list(taken)
        return [a for a in asked if any(self.shares_hardware(a, t) for t in held)]

    def free(self, taken: Iterable[str], wanted: int) -> list[str] | None:
        """``wanted`` whole GPUs with nothing of them taken (None: not enough)."""
        held = list(taken)
        free = [gpu for gpu in self.gpus if not any(self.shares_hardware(gpu, t) for t in held)]
        return free[:wanted] if len(free) >= wanted else None


def _spelled(uuid: str, wanted: str, prefix: bool) -> bool:
    """Whether ``wanted`` (lower case) is ``uuid``, with or without its ``GPU-``/``MIG-``,
    or (``prefix``) the start of one of those."""
    name = uuid.lower()
    bare = name.split("-", 1)[1] if name.startswith(("gpu-", "mig-")) else name
    if prefix:
        return name.startswith(wanted) or bare.startswith(wanted)
    return wanted in (name, bare)
