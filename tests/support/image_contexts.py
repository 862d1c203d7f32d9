"""Generated parts of the build contexts of the images laid out like published ones.

tests/support/images.py calls these while it prepares a build context, next to the recipe
files of tests/images/<name>/; the Dockerfile COPYs what they write (nothing is fetched
inside a build). The files come from the same helpers as the host-side fixtures: the
stand-in torch of fake_torch.py and the conda records of conda_prefix.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conda_prefix import CondaPackage, make_conda_prefix
from .fake_torch import TORCH_CONDA_CU121, TORCH_NGC_2408, TorchSpec, write_fake_torch

# Debian bookworm's python3.11 (3.11.2-6+debXuY): the interpreter the conda prefix of
# pytorch-official is made from. Its Dockerfile checks the record against the binary.
BOOKWORM_PYTHON = "3.11.2"
PY_MM = "3.11"
CONDA_SITE = "lib/python3.11/site-packages"
CONDA_PREFIX = "/opt/conda"
CONDA = f"{CONDA_PREFIX}/bin/conda"
HISTORY_BASE_DATE = "2025-10-15 17:58:40"
HISTORY_TORCH_DATE = "2025-10-15 18:03:12"


def _pkg(name: str, version: str, build: str, channel: str, **fields) -> dict:
    return {"name": name, "version": version, "build": build, "channel": channel, **fields}


# The base environment as the image's first `conda install python=3.11` left it.
BASE_PACKAGES = [
    _pkg("_libgcc_mutex", "0.1", "main", "defaults"),
    _pkg("_openmp_mutex", "5.1", "1_gnu", "defaults", depends=["_libgcc_mutex 0.1 main"]),
    _pkg("ca-certificates", "2025.8.3", "hbd8a1cb_0", "conda-forge"),
    _pkg("ld_impl_linux-64", "2.40", "h12ee557_0", "defaults"),
    _pkg("libgcc-ng", "11.2.0", "h1234567_1", "defaults", depends=["_openmp_mutex"]),
    _pkg("libstdcxx-ng", "11.2.0", "h1234567_1", "defaults"),
    _pkg("libffi", "3.4.4", "h6a678d5_1", "defaults", depends=["libgcc-ng >=11.2.0"]),
    _pkg("ncurses", "6.4", "h6a678d5_0", "defaults", depends=["libgcc-ng >=11.2.0"]),
    _pkg("openssl", "3.0.15", "h5eee18b_0", "defaults", depends=["ca-certificates"]),
    _pkg("xz", "5.4.6", "h5eee18b_1", "defaults", depends=["libgcc-ng >=11.2.0"]),
    _pkg("zlib", "1.2.13", "h5eee18b_1", "defaults", depends=["libgcc-ng >=11.2.0"]),
    _pkg("python_abi", PY_MM, "2_cp311", "conda-forge"),
    _pkg(
        "python",
        BOOKWORM_PYTHON,
        "h955ad1f_0",
        "defaults",
        depends=[
            "ld_impl_linux-64 >=2.35.1",
            "libffi >=3.4,<4.0a0",
            "libgcc-ng >=11.2.0",
            "ncurses >=6.4,<7.0a0",
            "openssl >=3.0.15,<4.0a0",
            "xz >=5.4.6,<6.0a0",
            "zlib >=1.2.13,<1.3.0a0",
        ],
        files=[
            "bin/python",
            "bin/python3",
            f"bin/python{PY_MM}",
            f"lib/python{PY_MM}/os.py",
            f"lib/python{PY_MM}/site.py",
            f"lib/python{PY_MM}/sysconfig.py",
        ],
        requested_spec=f"python={PY_MM}",
    ),
]

# CUDA runtime libraries of the nvidia channel that pytorch-cuda=12.1 pulls in.
NVIDIA_PACKAGES = [
    _pkg("cuda-cudart", "12.1.105", "0", "nvidia"),
    _pkg("cuda-cupti", "12.1.105", "0", "nvidia"),
    _pkg("cuda-libraries", "12.1.0", "0", "nvidia"),
    _pkg("cuda-nvrtc", "12.1.105", "0", "nvidia"),
    _pkg("cuda-nvtx", "12.1.105", "0", "nvidia"),
    _pkg("cuda-runtime", "12.1.0", "0", "nvidia", depends=["cuda-libraries 12.1.0.*"]),
    _pkg("libcublas", "12.1.0.26", "0", "nvidia"),
    _pkg("libcufft", "11.0.2.4", "0", "nvidia"),
    _pkg("libcurand", "10.3.7.77", "0", "nvidia"),
    _pkg("libcusolver", "11.4.4.55", "0", "nvidia"),
    _pkg("libcusparse", "12.0.2.55", "0", "nvidia"),
    _pkg("libnvjitlink", "12.1.105", "0", "nvidia"),
]


def write_pytorch_official_context(context: Path) -> None:
    """``opt-conda/``: what conda added to /opt/conda besides the interpreter itself.

    ``conda-meta/`` records and history of a base environment with python 3.11 (defaults,
    conda-forge) and then ``pytorch=2.9.0 pytorch-cuda=12.1`` (pytorch, nvidia channels),
    and the stand-in torch in site-packages, owned by its conda record (no dist-info).
    """
    prefix = context / "opt-conda"
    spec = TorchSpec.from_dict(TORCH_CONDA_CU121, default_installer="conda")
    torch_files = write_fake_torch(prefix / CONDA_SITE, spec, dist_info=False)
    torch_packages = [
        _pkg(
            "pytorch",
            spec.public_version,
            f"py{PY_MM}_cuda{spec.cuda}_cudnn{spec.cudnn_dotted}_0",
            "pytorch",
            depends=[
                f"pytorch-cuda >={spec.cuda},<{spec.cuda}.1",
                "pytorch-mutex 1.0 cuda",
                "python >=3.11,<3.12.0a0",
                "filelock",
                "jinja2",
                "networkx",
                "sympy",
            ],
            files=[f"{CONDA_SITE}/{rel}" for rel in torch_files],
            requested_spec=f"pytorch={spec.public_version}",
        ),
        _pkg(
            "pytorch-cuda",
            spec.cuda,
            "ha16c6d3_6",
            "pytorch",
            depends=[f"cuda-runtime >={spec.cuda},<{spec.cuda}.1"],
            requested_spec=f"pytorch-cuda={spec.cuda}",
        ),
        _pkg("pytorch-mutex", "1.0", "cuda", "pytorch"),
        *NVIDIA_PACKAGES,
    ]
    # Only what a command asked for has a requested_spec; conda writes "None" for the rest.
    base = [{"requested_spec": "None", **p} for p in BASE_PACKAGES]
    torch_packages = [{"requested_spec": "None", **p} for p in torch_packages]
    history = [
        {
            "date": HISTORY_BASE_DATE,
            "cmd": f"{CONDA} install -y python={PY_MM}",
            "add": [CondaPackage.parse(p) for p in base],
            "update_specs": [f"python={PY_MM}"],
        },
        {
            "date": HISTORY_TORCH_DATE,
            "cmd": (
                f"{CONDA} install -y -c pytorch -c nvidia "
                f"pytorch={spec.public_version} pytorch-cuda={spec.cuda}"
            ),
            "add": [CondaPackage.parse(p) for p in torch_packages],
            "update_specs": [f"pytorch={spec.public_version}", f"pytorch-cuda={spec.cuda}"],
        },
    ]
    make_conda_prefix(
        prefix, name="base", python=False, packages=base + torch_packages, history=history
    )


def write_ngc_pytorch_context(context: Path) -> None:
    """``dist-packages/``: NVIDIA's torch build as pip installed it (with its dist-info)."""
    spec = TorchSpec.from_dict(TORCH_NGC_2408, default_installer="pip")
    write_fake_torch(context / "dist-packages", spec)


# image name -> writer of its generated build-context files
CONTEXT_WRITERS: dict[str, Callable[[Path], None]] = {
    "pytorch-official": write_pytorch_official_context,
    "ngc-pytorch": write_ngc_pytorch_context,
}
# What the writers' output depends on (covered by those images' recipe digests).
WRITER_SOURCES = [
    Path(__file__).resolve().parent / name
    for name in ("image_contexts.py", "conda_prefix.py", "fake_torch.py", "dist_info.py")
]
