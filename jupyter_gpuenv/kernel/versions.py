"""Reading driver, CUDA, cuDNN and compute-capability versions, and looking them up.

Standard library only and Python >= 3.8: the doctor runs inside kernels (``%gpuinfo``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import cuda_table

_VERSION_RE = re.compile(r"^\s*(\d+(?:\.\d+)*)")
_ARCH_RE = re.compile(r"^(sm|compute)_(\d{2,3})([af]?)$")


def parse_version(value: Any) -> tuple[int, ...] | None:
    """``"570.124.06"`` -> (570, 124, 6); leading digits only, so ``"2.9.0+cu121"`` works."""
    if value is None:
        return None
    match = _VERSION_RE.match(str(value))
    if not match:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def version_at_least(value: Any, minimum: Any) -> bool:
    """Dotted comparison where missing parts count as 0 (``"580" >= "580.0.0"``)."""
    left, right = parse_version(value), parse_version(minimum)
    if left is None or right is None:
        return False
    width = max(len(left), len(right))
    return left + (0,) * (width - len(left)) >= right + (0,) * (width - len(right))


def major_minor(value: Any) -> tuple[int, int] | None:
    """``"12.1"``, ``"12.1.105"``, (12, 1) or 12010 (NVML's integer form) -> (12, 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value // 1000, (value % 1000) // 10) if value >= 1000 else None
    if isinstance(value, tuple):
        return (int(value[0]), int(value[1]) if len(value) > 1 else 0) if value else None
    parts = parse_version(value)
    if not parts:
        return None
    return (parts[0], parts[1] if len(parts) > 1 else 0)


def format_major_minor(value: tuple[int, int]) -> str:
    return f"{value[0]}.{value[1]}"


def minimum_driver(cuda: Any) -> str | None:
    """Lowest Linux driver any (non-RC) release of this CUDA major.minor needs."""
    wanted = major_minor(cuda)
    if wanted is None:
        return None
    candidates = [
        driver
        for release, minor, driver in cuda_table.TOOLKIT_DRIVER_MINIMUM
        if major_minor(minor) == wanted and " RC" not in release
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda driver: parse_version(driver) or ())


def cuda_version_for_driver(driver: Any) -> str | None:
    """The newest CUDA major.minor whose minimum driver this driver meets (e.g. 535 -> 12.2)."""
    if parse_version(driver) is None:
        return None
    best: tuple[int, int] | None = None
    for release, minor, minimum in cuda_table.TOOLKIT_DRIVER_MINIMUM:
        mm = major_minor(minor)
        if " RC" in release or mm is None or not version_at_least(driver, minimum):
            continue
        if best is None or mm > best:
            best = mm
    return format_major_minor(best) if best else None


def minor_compatibility_floor(cuda: Any) -> str | None:
    """Driver floor of CUDA minor-version compatibility for this build's major, if any."""
    mm = major_minor(cuda)
    return cuda_table.MINOR_VERSION_COMPATIBILITY_FLOOR.get(mm[0]) if mm else None


def parse_compute_capability(value: Any) -> tuple[int, int] | None:
    """``"8.6"``, ``(8, 6)``, ``[8, 6]`` or ``"sm_86"`` -> (8, 6)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            return (int(value[0]), int(value[1]))
        except (TypeError, ValueError):
            return None
    text = str(value).strip().lower()
    arch = _ARCH_RE.match(text)
    if arch:
        return _digits_to_cc(arch.group(2))
    match = re.match(r"^(\d+)\.(\d+)$", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def format_cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def sm_name(cc: tuple[int, int]) -> str:
    """(8, 6) -> ``sm_86``; (10, 0) -> ``sm_100``."""
    return f"sm_{cc[0]}{cc[1]}"


def _digits_to_cc(digits: str) -> tuple[int, int]:
    # The last digit is the minor revision: 86 -> 8.6, 100 -> 10.0, 121 -> 12.1.
    return (int(digits[:-1]), int(digits[-1]))


@dataclass(frozen=True)
class ArchEntry:
    """One entry of a build's arch list: a cubin (``sm_XY``) or PTX (``compute_XY``).

    Rules from NVIDIA's compatibility guides: a cubin for X.Y runs on GPUs of the same
    major X with minor >= Y; PTX for X.Y is JIT-compiled for any GPU with capability
    >= X.Y. Arch-specific variants (``sm_90a``) run only on exactly X.Y; family variants
    (``sm_100f``) run within the major family like a plain cubin.
    """

    name: str
    kind: str  # "sm" (cubin) or "compute" (PTX)
    cc: tuple[int, int]
    variant: str = ""  # "", "a" (arch-specific) or "f" (family)

    @property
    def is_ptx(self) -> bool:
        return self.kind == "compute"

    def runs_on(self, gpu: tuple[int, int]) -> bool:
        if self.variant == "a":
            return gpu == self.cc
        if not self.is_ptx or self.variant == "f":
            return gpu[0] == self.cc[0] and gpu[1] >= self.cc[1]
        return gpu >= self.cc


def parse_arch_list(value: Any) -> list[ArchEntry]:
    """A list (or space-separated string) of ``sm_XY``/``compute_XY`` names; others skipped."""
    if value is None:
        return []
    items: Iterable[Any] = value.split() if isinstance(value, str) else value
    entries = []
    for item in items:
        match = _ARCH_RE.match(str(item).strip().lower())
        if match:
            entries.append(
                ArchEntry(
                    name=match.group(0),
                    kind=match.group(1),
                    cc=_digits_to_cc(match.group(2)),
                    variant=match.group(3),
                )
            )
    return entries


def first_toolkit_for(cc: tuple[int, int]) -> str | None:
    return cuda_table.FIRST_TOOLKIT_FOR_ARCH.get(format_cc(cc))


def format_cudnn(value: Any) -> str | None:
    """cuDNN's integer version as dotted text: 90100 -> 9.1.0, 8902 -> 8.9.2."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if "." in text:
        return text
    try:
        number = int(text)
    except ValueError:
        return text
    if number >= 90000:  # cuDNN 9 encodes major * 10000 + minor * 100 + patch
        return f"{number // 10000}.{(number % 10000) // 100}.{number % 100}"
    return f"{number // 1000}.{(number % 1000) // 100}.{number % 100}"


def join_names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "nothing"
