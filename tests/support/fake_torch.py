"""A stand-in ``torch`` package for prefixes: what the environment probe reads, nothing more.

A CUDA build of PyTorch cannot be installed on a GPU-less test machine (and weighs
gigabytes), so tests get a package laid out like the real wheel: ``torch/version.py`` as
PyTorch's build generates it, plus the few attributes the probe touches
(``backends.cudnn.version()``, ``_C._cuda_getArchFlags()``, ``cuda.is_available()``).
As in real builds, a CPU build's ``torch._C`` has no ``_cuda_getArchFlags`` and
``backends.cudnn.version()`` is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dist_info import write_dist_info

DEFAULT_CUDA_ARCHS = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
# What a CUDA 12.1 / cuDNN 9.1 wheel of PyTorch 2.9 reports (conda_prefix_factory(torch=...)).
TORCH_CU121 = {
    "version": "2.9.0+cu121",
    "cuda": "12.1",
    "cudnn": "90100",
    "arch_list": list(DEFAULT_CUDA_ARCHS),
}
GIT_VERSION = "0f1f0d3b6d4a5b7c8e9f0a1b2c3d4e5f6a7b8c9d"
# The pytorch channel's conda build in the official pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime
# layout: conda builds carry no local version part (no "+cu121").
TORCH_CONDA_CU121 = {
    "version": "2.9.0",
    "cuda": "12.1",
    "cudnn": "90100",
    "arch_list": list(DEFAULT_CUDA_ARCHS),
}
# NVIDIA's source build in nvcr.io/nvidia/pytorch:24.08-py3 (CUDA 12.6.0, cuDNN 9.3.0.75,
# TORCH_CUDA_ARCH_LIST="5.2 6.0 6.1 7.0 7.2 7.5 8.0 8.6 8.7 9.0+PTX").
TORCH_NGC_2408 = {
    "version": "2.5.0a0+872d972e41.nv24.08",
    "cuda": "12.6",
    "cudnn": "90300",
    "arch_list": [
        *("sm_52", "sm_60", "sm_61", "sm_70", "sm_72", "sm_75", "sm_80", "sm_86", "sm_87"),
        *("sm_90", "compute_90"),
    ],
    "git_version": "872d972e41596a9ac94dfd5d5f5d5b0c5f2b8c3e",
    "installer": "pip",
    # setuptools writes the PEP 440 normal form into the metadata: "nv24.08" -> "nv24.8".
    "dist_version": "2.5.0a0+872d972e41.nv24.8",
}


@dataclass
class TorchSpec:
    """What the fake build reports; ``cuda=None`` is a CPU build (no cuDNN, no arch flags)."""

    version: str
    cuda: str | None = None
    cudnn: int | None = None
    arch_list: list[str] = field(default_factory=list)
    hip: str | None = None
    installer: str = "conda"
    import_error: str | None = None
    git_version: str = GIT_VERSION
    dist_version: str | None = None  # the dist-info's Version, when not ``version``

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_installer: str) -> TorchSpec:
        cuda = data.get("cuda")
        cudnn = data.get("cudnn")
        arch_list = data.get("arch_list")
        if arch_list is None:
            arch_list = list(DEFAULT_CUDA_ARCHS) if cuda else []
        return cls(
            version=str(data["version"]),
            cuda=str(cuda) if cuda else None,
            cudnn=int(cudnn) if cudnn not in (None, "") and cuda else None,
            arch_list=list(arch_list),
            hip=data.get("hip"),
            installer=data.get("installer", default_installer),
            import_error=data.get("import_error"),
            git_version=data.get("git_version", GIT_VERSION),
            dist_version=data.get("dist_version"),
        )

    @property
    def public_version(self) -> str:
        """The version without its local part (``2.9.0+cu121`` -> ``2.9.0``)."""
        return self.version.split("+", 1)[0]

    @property
    def cudnn_dotted(self) -> str | None:
        """cuDNN as conda build strings spell it (``90100`` -> ``9.1.0``)."""
        if self.cudnn is None:
            return None
        return f"{self.cudnn // 10000}.{self.cudnn % 10000 // 100}.{self.cudnn % 100}"


def write_fake_torch(site_packages: Path, spec: TorchSpec, dist_info: bool = True) -> list[str]:
    """Write the ``torch`` package and its dist-info; return paths relative to site_packages.

    ``site_packages`` may be any folder (a build context a Dockerfile copies from).
    ``dist_info=False`` leaves the metadata out, as in conda packages of PyTorch whose
    files are known only from their ``conda-meta`` record.
    """
    root = site_packages / "torch"
    sources = {
        "version.py": _version_py(spec),
        "__init__.py": _init_py(spec),
        "_C/__init__.py": _c_py(spec),
        "backends/__init__.py": "from torch.backends import cudnn as cudnn\n",
        "backends/cudnn/__init__.py": (
            "from torch import _C\n\n\n"
            "def is_available():\n    return _C._has_cudnn\n\n\n"
            "def version():\n    return _C._CUDNN_VERSION if _C._has_cudnn else None\n"
        ),
        "cuda/__init__.py": (
            "from torch import _C\n\n\n"
            "def is_available():\n    return _C._cuda_getDeviceCount() > 0\n\n\n"
            "def device_count():\n    return _C._cuda_getDeviceCount()\n\n\n"
            "def get_arch_list():\n"
            "    if not is_available():\n        return []\n"
            "    flags = _C._cuda_getArchFlags()\n"
            "    return [] if flags is None else flags.split()\n"
        ),
    }
    files = []
    for rel, text in sources.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files.append(f"torch/{rel}")
    if not dist_info:
        return files
    return write_dist_info(
        site_packages,
        "torch",
        spec.dist_version or spec.version,
        spec.installer,
        files,
        requires=["filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx"],
    )


def _version_py(spec: TorchSpec) -> str:
    # The same shape as the file PyTorch's tools/generate_torch_version.py writes.
    return (
        "from typing import Optional\n\n"
        "__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'rocm', 'xpu']\n"
        f"__version__ = {spec.version!r}\n"
        "debug = False\n"
        f"cuda: Optional[str] = {spec.cuda!r}\n"
        f"git_version = {spec.git_version!r}\n"
        f"hip: Optional[str] = {spec.hip!r}\n"
        f"rocm: Optional[str] = {spec.hip!r}\n"
        "xpu: Optional[str] = None\n"
    )


def _c_py(spec: TorchSpec) -> str:
    text = (
        '"""Stand-in for the compiled extension: build facts only."""\n\n'
        f"_has_cudnn = {spec.cudnn is not None}\n"
        f"_CUDNN_VERSION = {spec.cudnn!r}\n\n\n"
        "def _cuda_getDeviceCount():\n    return 0\n"
    )
    if spec.cuda:
        # Real CPU builds have no _cuda_getArchFlags at all (checked on torch 2.13.0+cpu).
        flags = " ".join(spec.arch_list)
        text += f"\n\ndef _cuda_getArchFlags():\n    return {flags!r}\n"
    return text


def _init_py(spec: TorchSpec) -> str:
    head = '"""Test stand-in for PyTorch, written by the jupyter-gpuenv test harness."""\n\n'
    if spec.import_error:
        # What a broken CUDA install looks like: the package is there, the import fails.
        head += f"raise ImportError({spec.import_error!r})\n\n"
    return head + (
        "from torch import version as version\n"
        "from torch.version import __version__ as __version__\n"
        "from torch import _C as _C\n"
        "from torch import backends as backends\n"
        "from torch import cuda as cuda\n"
    )
