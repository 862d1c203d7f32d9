"""What a probe found in an environment: facts only, never anything a launch uses.

Probe results are kept in a cache file the server's user can write, so reading one back
is reading untrusted input: :meth:`ProbeResult.from_json` accepts only the exact shape
written by :meth:`ProbeResult.to_json` (known fields, right types) and returns None for
anything else, which the catalog treats as "not probed yet".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_OPTIONAL_TEXT = (
    "python_version",
    "python_executable",
    "prefix",
    "ipykernel_version",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "hip_version",
    "torch_location",
)


@dataclass
class ProbeResult:
    """Versions and problems of one environment, as its own interpreter reported them.

    ``transient`` marks outcomes that may change without the environment changing
    (timeouts, Docker errors); the cache keeps those in memory only.
    """

    python_version: str | None = None
    python_executable: str | None = None
    prefix: str | None = None
    ipykernel: bool = False
    ipykernel_version: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    hip_version: str | None = None
    torch_location: str | None = None
    torch_arch_list: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    transient: bool = False
    probe_seconds: float | None = None

    @classmethod
    def failed(cls, message: str, transient: bool) -> ProbeResult:
        return cls(problems=[message], transient=transient)

    @classmethod
    def from_probe_output(cls, data: Mapping[str, Any]) -> ProbeResult:
        """The probe script's facts (its own output, so lenient: odd values become None)."""
        values: dict[str, Any] = {}
        for name in _OPTIONAL_TEXT:
            value = data.get(name)
            values[name] = value if isinstance(value, str) else None
        values["ipykernel"] = bool(data.get("ipykernel"))
        arch = data.get("torch_arch_list")
        values["torch_arch_list"] = [str(a) for a in arch] if isinstance(arch, list) else []
        problems = data.get("problems")
        values["problems"] = [str(p) for p in problems] if isinstance(problems, list) else []
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ProbeResult | None:
        """A result read back from disk, or None when it is not exactly our shape."""
        if not isinstance(data, dict):
            return None
        if set(data) != {f.name for f in dataclasses.fields(cls)}:
            return None
        if any(
            data[name] is not None and not isinstance(data[name], str) for name in _OPTIONAL_TEXT
        ):
            return None
        if not isinstance(data["ipykernel"], bool) or not isinstance(data["transient"], bool):
            return None
        for name in ("torch_arch_list", "problems"):
            value = data[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return None
        seconds = data["probe_seconds"]
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float))
        ):
            return None
        return cls(**data)
