"""Compatibility checks: one environment's PyTorch/CUDA build against one host.

``evaluate(env_like, host)`` answers before a notebook fails with "CUDA driver version is
insufficient" or "no kernel image is available for execution on the device". It is pure:
the host (real or hypothetical) comes in as a ``HostInfo``, the environment as anything
with the catalog's fields (an ``Environment``, its REST JSON, or a dict built by
``%gpuinfo``). Standard library only and Python >= 3.8, because it also runs inside kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import versions as v
from .host_info import GpuInfo, HostInfo

OK, WARNING, ERROR = "ok", "warning", "error"
SEVERITIES = (OK, WARNING, ERROR)

__all__ = [
    "ERROR",
    "OK",
    "SEVERITIES",
    "WARNING",
    "Compatibility",
    "Finding",
    "GpuInfo",
    "HostInfo",
    "evaluate",
]
_RANK = {OK: 0, WARNING: 1, ERROR: 2}
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class Finding:
    """One result: ``severity`` ok/warning/error, a one-line ``message`` and the ``fix``."""

    severity: str
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "message": self.message, "fix": self.fix}


@dataclass
class Compatibility:
    """All findings for one environment; ``verdict`` is the worst severity among them."""

    verdict: str
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def of(cls, findings: list[Finding]) -> Compatibility:
        worst = max((f.severity for f in findings), key=_RANK.__getitem__, default=OK)
        return cls(verdict=worst, findings=list(findings))

    def headline(self) -> str:
        """The one line to show where there is room for one (``%gpuinfo``, a badge tooltip)."""
        for finding in self.findings:
            if finding.severity == self.verdict:
                return finding.message
        return "No compatibility problem found."

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "findings": [f.to_json() for f in self.findings]}


@dataclass
class _Build:
    """The environment fields the checks read, whatever shape the environment came in."""

    kind: str | None
    torch_version: str | None
    cuda_version: str | None
    cudnn_version: str | None
    arch_list: list[v.ArchEntry]
    requested_gpus: Any
    problems: list[str]
    visible_devices: str | None = None
    runtime_source: str | None = None

    @classmethod
    def read(cls, env: Any, requested_gpus: Any, cuda_runtime: Any) -> _Build:
        settings = _get(env, "settings") or {}
        if requested_gpus is None:
            requested_gpus = settings.get("gpus", _get(env, "gpus"))
        build = cls(
            kind=_get(env, "kind"),
            torch_version=_text(_get(env, "torch_version")),
            cuda_version=_text(_get(env, "cuda_version")),
            cudnn_version=_text(_get(env, "cudnn_version")),
            arch_list=v.parse_arch_list(_get(env, "torch_arch_list")),
            requested_gpus="all" if requested_gpus is None else requested_gpus,
            problems=[str(p) for p in (_get(env, "problems") or [])],
            visible_devices=_env_value(settings.get("environment"), VISIBLE_DEVICES),
        )
        if cuda_runtime and not build.torch_version and not build.cuda_version:
            build.cuda_version, build.runtime_source = cuda_runtime
        return build

    @property
    def label(self) -> str:
        """How findings name what was built for CUDA."""
        cuda = v.major_minor(self.cuda_version)
        version = v.format_major_minor(cuda) if cuda else self.cuda_version
        if self.runtime_source:
            return f"CUDA {version} runtime ({self.runtime_source})"
        return f"CUDA {version} build"

    @property
    def wants_no_gpu(self) -> bool:
        value = self.requested_gpus
        if isinstance(value, str):
            return value.strip().lower() in ("none", "void")
        return value == [] or (value == 0 and not isinstance(value, bool))

    @property
    def rebuild_hint(self) -> str:
        """How to get a different build, in the words of this kind of environment."""
        if self.kind == "docker":
            return "use an image built"
        if self.runtime_source:
            return "install CUDA packages"
        if self.kind in ("conda", "venv"):
            return "install a PyTorch build"
        return "use a PyTorch build"


def evaluate(
    env_like: Any,
    host: HostInfo,
    *,
    requested_gpus: Any = None,
    minor_version_compatibility: bool = True,
    cuda_runtime: tuple[str, str] | None = None,
) -> Compatibility:
    """Check one environment against one host.

    ``requested_gpus`` is the GPU setting that applies to the environment ("all", "none"
    or ids; default: the environment's own ``settings["gpus"]``, else "all").
    ``minor_version_compatibility=False`` treats every build below its minor's minimum
    driver as an error (``c.GpuEnv.cuda_minor_version_compatibility``).
    ``cuda_runtime`` is ``(major.minor, where it was found)`` for an environment without
    PyTorch whose packages bring a CUDA runtime (see ``cuda_runtime.py``).
    """
    build = _Build.read(env_like, requested_gpus, cuda_runtime)
    findings: list[Finding] = []
    if not build.torch_version and not build.cuda_version:
        findings.append(
            Finding(OK, "No PyTorch or CUDA runtime in this environment: nothing to check.")
        )
    elif not build.cuda_version:
        findings.extend(_check_cpu_build(build, host))
    elif not host.has_gpu or build.wants_no_gpu:
        findings.append(_gpu_build_without_gpu(build, host))
        findings.extend(_check_cudnn(build))
    else:
        driver_findings, jit_blocked_below = _check_driver(build, host, minor_version_compatibility)
        findings.extend(driver_findings)
        findings.extend(_check_arch(build, host, jit_blocked_below))
        findings.extend(_check_cudnn(build))
    findings.extend(_check_docker_runtime(build, host))
    return Compatibility.of(findings)


def _check_cpu_build(build: _Build, host: HostInfo) -> list[Finding]:
    torch = f"PyTorch {build.torch_version}"
    if not host.has_gpu or build.wants_no_gpu:
        return [Finding(OK, f"{torch} is a CPU build; no GPU is expected here.")]
    cuda = host.cuda_driver_version
    target = f"CUDA ≤ {cuda}" if cuda else "CUDA"
    return [
        Finding(
            WARNING,
            f"{torch} is a CPU-only build: it cannot use this host's GPUs.",
            f"{build.rebuild_hint} for {target} to use the GPUs",
        )
    ]


def _gpu_build_without_gpu(build: _Build, host: HostInfo) -> Finding:
    if build.torch_version:
        what = f"PyTorch {build.torch_version}"
    else:
        what = f"This environment ({build.runtime_source or 'a CUDA runtime'})"
    if build.wants_no_gpu:
        return Finding(
            WARNING,
            f"{what} is built for CUDA {build.cuda_version}, but it is configured without "
            "GPUs: it works on the CPU only.",
            "give it GPUs through c.GpuEnv.gpus or its docker_images entry's gpus",
        )
    why = f" ({host.reason})" if host.reason else ""
    return Finding(
        WARNING,
        f"{what} is built for CUDA {build.cuda_version}, but this host has no NVIDIA "
        f"GPU{why}: it works on the CPU only.",
        "run it on a host with an NVIDIA GPU to use CUDA",
    )


def _check_driver(
    build: _Build, host: HostInfo, minor_compat: bool
) -> tuple[list[Finding], str | None]:
    """Runtime vs driver. Also returns the driver needed for PTX JIT when only
    minor-version compatibility makes the build run (PTX JIT then fails)."""
    cuda = v.major_minor(build.cuda_version)
    if cuda is None:
        return [Finding(WARNING, f"Unreadable CUDA version {build.cuda_version!r}.")], None
    label = build.label
    driver, host_cuda = host.driver_version, v.major_minor(host.cuda_driver_version)
    required = v.minimum_driver(cuda)
    floor = v.minor_compatibility_floor(cuda) if minor_compat else None
    if driver and required:
        full = v.version_at_least(driver, required)
        via_minor_compat = bool(floor) and v.version_at_least(driver, floor)
    elif host_cuda:
        # Unknown minor or unknown driver number: compare with the driver's CUDA version.
        full = cuda <= host_cuda
        via_minor_compat = bool(floor) and cuda[0] == host_cuda[0]
    else:
        return [Finding(OK, f"{label}: the driver version is unknown, not checked.")], None
    have = _describe_driver(driver, host.cuda_driver_version)
    if full:
        need = f", which meets its minimum {required}" if required else ""
        return [Finding(OK, f"{label} runs on driver {have}{need}.")], None
    target = required or f"a driver for CUDA {v.format_major_minor(cuda)}"
    if via_minor_compat:
        return [
            Finding(
                WARNING,
                f"{label} runs on driver {have} only through CUDA minor-version "
                "compatibility: no PTX JIT and no APIs newer than the driver.",
                f"upgrade the driver to ≥ {target} for full CUDA "
                f"{v.format_major_minor(cuda)} support",
            )
        ], target
    compat = f" (≥ {floor} through minor-version compatibility)" if floor else ""
    fix = f"upgrade the driver to ≥ {required or target}"
    if host.cuda_driver_version:
        fix += f", or {build.rebuild_hint} for CUDA ≤ {host.cuda_driver_version}"
    return [
        Finding(
            ERROR, f"{label} needs driver ≥ {required or '?'}{compat}; this host has {have}.", fix
        )
    ], None


def _describe_driver(driver: str | None, cuda: str | None) -> str:
    if driver and cuda:
        return f"{driver} (CUDA {cuda})"
    return driver or f"for CUDA {cuda}"


def _check_arch(build: _Build, host: HostInfo, jit_needs_driver: str | None) -> list[Finding]:
    groups: dict[tuple[int, int], list[GpuInfo]] = {}
    for gpu in _selected_gpus(host, build.requested_gpus):
        cc = v.parse_compute_capability(gpu.compute_capability)
        if cc is not None:
            groups.setdefault(cc, []).append(gpu)
    if not groups or not (build.arch_list or build.torch_version):
        return []
    if not build.arch_list:
        return [Finding(OK, "The build's arch list is unknown: compute capability not checked.")]
    has = v.join_names([entry.name for entry in build.arch_list])
    findings = []
    for cc, gpus in sorted(groups.items()):
        label = _describe_gpus(gpus, cc)
        cubins = [e for e in build.arch_list if not e.is_ptx and e.runs_on(cc)]
        ptx = [e for e in build.arch_list if e.is_ptx and e.runs_on(cc)]
        if cubins:
            best = max(cubins, key=lambda e: e.cc)
            how = "native" if best.cc == cc else "compatible"
            findings.append(Finding(OK, f"{label} runs this build's {best.name} kernels ({how})."))
        elif ptx and jit_needs_driver:
            best = max(ptx, key=lambda e: e.cc)
            findings.append(
                Finding(
                    ERROR,
                    f"{label} has no kernel image in this build and needs PTX JIT from "
                    f"{best.name}, which minor-version compatibility does not provide.",
                    f"upgrade the driver to ≥ {jit_needs_driver}",
                )
            )
        elif ptx:
            best = max(ptx, key=lambda e: e.cc)
            findings.append(
                Finding(
                    OK,
                    f"{label} has no {v.sm_name(cc)} kernels in this build; the driver "
                    f"JIT-compiles them from {best.name} PTX (slow first start).",
                )
            )
        else:
            findings.append(
                Finding(
                    ERROR,
                    f"{label}: no kernel image for {v.sm_name(cc)} in this build (has {has}).",
                    _arch_fix(build, cc),
                )
            )
    return findings


def _arch_fix(build: _Build, cc: tuple[int, int]) -> str:
    newest = max((entry.cc for entry in build.arch_list), default=(0, 0))
    fix = f"{build.rebuild_hint} for {v.sm_name(cc)}"
    first = v.first_toolkit_for(cc)
    if cc > newest and first:
        return f"{fix} (CUDA ≥ {first})"
    if cc < newest:
        return f"{fix} (an older CUDA version that still targets it)"
    return fix


def _describe_gpus(gpus: list[GpuInfo], cc: tuple[int, int]) -> str:
    indexes = [str(g.index) for g in gpus if g.index is not None]
    names = sorted({g.name for g in gpus if g.name and g.name != "hypothetical GPU"})
    if indexes:
        who = ("GPUs " if len(indexes) > 1 else "GPU ") + ", ".join(indexes)
    else:
        who = "The GPU"
    detail = ", ".join(names + [f"compute capability {v.format_cc(cc)}"])
    return f"{who} ({detail})"


def _selected_gpus(host: HostInfo, requested: Any) -> list[GpuInfo]:
    """The host GPUs this environment is given; unknown ids fall back to all of them.

    A count ("any N GPUs") may land on any of them.
    """
    if isinstance(requested, int) and not isinstance(requested, bool):
        return list(host.gpus)
    if isinstance(requested, str):
        if requested.strip().lower() in ("all", ""):
            return list(host.gpus)
        requested = [part.strip() for part in requested.split(",")]
    wanted = {str(item) for item in requested or []}
    chosen = [g for g in host.gpus if str(g.index) in wanted or (g.uuid and g.uuid in wanted)]
    return chosen or list(host.gpus)


def _check_cudnn(build: _Build) -> list[Finding]:
    if not build.torch_version:
        return []  # only PyTorch's build says whether it expects cuDNN
    cudnn = v.format_cudnn(build.cudnn_version)
    if cudnn:
        return [Finding(OK, f"cuDNN {cudnn} is available to this CUDA build.")]
    if any("torch" in problem.lower() for problem in build.problems):
        return [Finding(OK, "cuDNN not checked: PyTorch could not be imported by the probe.")]
    cuda = v.major_minor(build.cuda_version)
    major = cuda[0] if cuda else 12
    return [
        Finding(
            WARNING,
            f"This CUDA {build.cuda_version} build of PyTorch finds no cuDNN: "
            "convolutions and RNNs fall back to slow kernels or fail.",
            f"install cuDNN for CUDA {major} (pip install nvidia-cudnn-cu{major}, "
            "or conda install cudnn)",
        )
    ]


def _check_docker_runtime(build: _Build, host: HostInfo) -> list[Finding]:
    by_variable = (build.visible_devices or "none").lower() not in ("none", "void")
    asks = not build.wants_no_gpu or by_variable
    if build.kind != "docker" or not asks or not host.has_gpu:
        return []
    if host.docker_nvidia_runtime is not False:
        return []
    severity = ERROR if build.cuda_version else WARNING
    how = f" ({VISIBLE_DEVICES}={build.visible_devices})" if by_variable else ""
    return [
        Finding(
            severity,
            f"This image asks for GPUs{how}, but Docker has no NVIDIA runtime: its "
            "containers get no GPU.",
            "install the NVIDIA Container Toolkit, run `nvidia-ctk runtime configure "
            "--runtime=docker` and restart Docker",
        )
    ]


def _get(env: Any, name: str) -> Any:
    if isinstance(env, Mapping):
        return env.get(name)
    return getattr(env, name, None)


def _env_value(environment: Any, name: str) -> str | None:
    """A variable of a docker_images entry's ``environment`` (a dict or KEY=VALUE list)."""
    if isinstance(environment, Mapping):
        return _text(environment.get(name))
    for item in environment or []:
        key, _, value = str(item).partition("=")
        if key == name:
            return _text(value)
    return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
