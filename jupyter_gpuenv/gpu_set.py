"""A set of GPUs: the one value type for "which GPUs" across config, policy and schedulers.

GPUs are named in NVIDIA's vocabulary: NVML indexes ("0"), GPU UUIDs ("GPU-8f..") and
MIG UUIDs ("MIG-2a.."), or the words "all" and "none". A scheduler that picks GPUs
itself (Swarm) takes a count instead: "any N GPUs". Ids compare loosely: "01" is index 1
and UUIDs ignore case, by one rule everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_WORD = "all"
NONE_WORDS = ("none", "void", "")

GpuSetJson = str | list[str] | int


class GpuSetError(ValueError):
    """A value that names no set of GPUs; the message says what is accepted."""


def gpu_key(gpu_id: object) -> str:
    """The comparison key of one id: indexes as plain numbers, UUIDs in lower case."""
    text = str(gpu_id).strip()
    return str(int(text)) if text.isdigit() else text.lower()


@dataclass(frozen=True)
class GpuSet:
    """Everything (``ids`` and ``count`` None), named GPUs (``ids``), or any ``count`` of them.

    ``source`` says where the set came from (e.g. the variable of a user's grant); it is
    not part of equality.
    """

    ids: tuple[str, ...] | None = None
    count: int | None = None
    source: str | None = field(default=None, compare=False)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def parse(cls, value: object, source: str | None = None) -> GpuSet:
        """Read "all", "none"/"void"/"", "0,1", "GPU-..,MIG-..", a list of those, or a count.

        An int is a count ("any N GPUs"; 0 is none). Raises GpuSetError for anything else.
        """
        if isinstance(value, GpuSet):
            return cls(value.ids, value.count, source or value.source)
        if value is None:
            return cls(source=source)
        if isinstance(value, bool):
            raise GpuSetError(f"gpus must be 'all', 'none', a count or GPU ids, not {value!r}")
        if isinstance(value, int):
            if value < 0:
                raise GpuSetError(f"a GPU count cannot be negative ({value})")
            return cls(ids=()) if value == 0 else cls(count=value, source=source)
        if isinstance(value, str):
            text = value.strip()
            if text.lower() == ALL_WORD:
                return cls(source=source)
            if text.lower() in NONE_WORDS:
                return cls(ids=(), source=source)
            parts: list[str] = [p.strip() for p in text.split(",")]
        elif isinstance(value, (list, tuple)):
            parts = []
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (int, str)):
                    raise GpuSetError(f"GPU id {item!r} must be an index or a UUID")
                parts.append(str(item).strip())
        else:
            raise GpuSetError(
                f"gpus must be 'all', 'none', a count or a list of GPU indexes/UUIDs, "
                f"not {value!r}"
            )
        if any(p.lower() == ALL_WORD for p in parts):
            return cls(source=source)
        ids = tuple(dict.fromkeys(p for p in parts if p.lower() not in NONE_WORDS))
        for gpu_id in ids:
            if not _valid_id(gpu_id):
                raise GpuSetError(
                    f"GPU id {gpu_id!r} is neither an index nor a GPU-/MIG- UUID"
                )
        return cls(ids=ids, source=source)

    @classmethod
    def all(cls) -> GpuSet:
        return cls()

    @classmethod
    def none(cls) -> GpuSet:
        return cls(ids=())

    # -- questions ------------------------------------------------------------------

    @property
    def is_all(self) -> bool:
        return self.ids is None and self.count is None

    @property
    def is_none(self) -> bool:
        return self.ids is not None and not self.ids

    @property
    def is_count(self) -> bool:
        return self.count is not None

    def allows(self, index: int | None, uuid: str | None) -> bool:
        """Whether the GPU (or MIG device) with this NVML index / UUID is in the set.

        A count allows any GPU: which ones is the scheduler's choice.
        """
        if self.ids is None:
            return True
        for name in self.ids:
            key = gpu_key(name)
            if index is not None and key.isdigit() and int(key) == index:
                return True
            if uuid and key == uuid.lower():
                return True
        return False

    def covers(self, other: GpuSet) -> bool:
        """Whether every GPU ``other`` may get is one this set allows."""
        if other.is_none or self.is_all:
            return True
        if self.is_none:
            return False
        if self.is_count:
            return other.is_count and (other.count or 0) <= (self.count or 0)
        assert self.ids is not None
        if other.is_all:
            return False
        if other.is_count:
            return (other.count or 0) <= len(self.ids)
        return not self.beyond(other)

    def beyond(self, other: GpuSet) -> list[str]:
        """The ids of ``other`` that this set does not allow."""
        if self.ids is None or other.ids is None:
            return []
        mine = {gpu_key(g) for g in self.ids}
        return [g for g in other.ids if gpu_key(g) not in mine]

    # -- combination ----------------------------------------------------------------

    def intersect(self, other: GpuSet) -> GpuSet:
        """GPUs allowed by both, in this set's order; a count keeps at most the ids left."""
        if self.is_none or other.is_none:
            return GpuSet.none()
        if other.is_all:
            return GpuSet(self.ids, self.count)
        if self.is_all:
            return GpuSet(other.ids, other.count)
        if self.count is not None and other.count is not None:
            return GpuSet(count=min(self.count, other.count))
        if self.count is not None or other.count is not None:
            count = self.count if self.count is not None else other.count
            ids = self.ids if self.ids is not None else other.ids
            assert ids is not None and count is not None
            return GpuSet(ids=ids[:count])
        assert self.ids is not None and other.ids is not None
        allowed = {gpu_key(g) for g in other.ids}
        return GpuSet(ids=tuple(g for g in self.ids if gpu_key(g) in allowed))

    # -- output ---------------------------------------------------------------------

    def to_json(self) -> GpuSetJson:
        """"all", "none", a list of ids, or the count."""
        if self.count is not None:
            return self.count
        if self.ids is None:
            return ALL_WORD
        return list(self.ids) if self.ids else "none"

    def nvidia_visible_devices(self) -> str:
        """The NVIDIA container runtime's variable: "all", "void" (no GPU) or the ids."""
        if self.count is not None:
            raise GpuSetError(
                f"{self} names no particular GPUs; a scheduler must pick them first"
            )
        if self.ids is None:
            return ALL_WORD
        return ",".join(self.ids) if self.ids else "void"

    def __str__(self) -> str:
        if self.count is not None:
            return f"any {self.count}"
        if self.ids is None:
            return ALL_WORD
        return ",".join(self.ids) or "none"

    def describe(self) -> str:
        """The set with where it came from, e.g. ``GPUENV_GPUS=0,1``."""
        return f"{self.source}={self}" if self.source else str(self)


def _valid_id(gpu_id: str) -> bool:
    lower = gpu_id.lower()
    return gpu_id.isdigit() or lower.startswith(("gpu-", "mig-")) and len(gpu_id) > 4

