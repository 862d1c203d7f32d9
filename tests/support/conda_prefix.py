"""Conda prefixes laid out as conda leaves them, without conda (no channel is reachable).

What discovery, probing and export read is all there: ``conda-meta/*.json`` package
records, ``conda-meta/history``, ``etc/conda/activate.d`` scripts, ``*.dist-info`` folders
with their INSTALLER, and a working ``bin/python`` whose ``sys.prefix`` is the prefix.

The interpreter is the host's, copied in with its standard library linked in: Python finds
its home from the executable's folder (``lib/pythonX.Y/os.py``), so the prefix is a real
Python prefix with no ``pyvenv.cfg`` (conda envs have none). A ``.pth`` file puts the host's
site-packages after the prefix's own, so ipykernel imports while the prefix's packages
(the fake torch) win.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import sys
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .dist_info import write_dist_info
from .fake_torch import TorchSpec, write_fake_torch

PY_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
PY_MM = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_ABI = f"cp{sys.version_info.major}{sys.version_info.minor}"
SITE_PACKAGES = f"lib/{PY_DIR}/site-packages"
HISTORY_DATE = "2026-01-01 10:00:00"
CONDA_VERSION = "24.11.3"
CONDA_EXE = "/opt/conda/bin/conda"
SUBDIR = "linux-64"
CHANNEL_URLS = {
    "defaults": "https://repo.anaconda.com/pkgs/main",
    "pkgs/main": "https://repo.anaconda.com/pkgs/main",
    "main": "https://repo.anaconda.com/pkgs/main",
}

PackageInput = tuple[str, str, str, str] | Mapping[str, Any]


@dataclass
class CondaPackage:
    """One installed conda package (a ``conda-meta/<name>-<version>-<build>.json`` record)."""

    name: str
    version: str
    build: str
    channel: str = "conda-forge"
    depends: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    requested_spec: str | None = None

    @classmethod
    def parse(cls, value: PackageInput) -> CondaPackage:
        if isinstance(value, Mapping):
            return cls(**value)
        name, version, build, channel = value
        return cls(name, version, build, channel)

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def is_python_package(self) -> bool:
        """conda-forge/defaults build strings of Python packages start with ``py``."""
        return self.build.startswith("py") and self.name != "python"

    @property
    def subdir(self) -> str:
        """``pyh...`` builds are noarch: python packages, everything else is linux-64."""
        return "noarch" if self.build.startswith("pyh") else SUBDIR

    @property
    def channel_base(self) -> str:
        if "://" in self.channel:
            return re.sub(r"/(noarch|linux-64)/?$", "", self.channel.rstrip("/"))
        return CHANNEL_URLS.get(self.channel, f"https://conda.anaconda.org/{self.channel}")

    @property
    def channel_name(self) -> str:
        """The canonical name conda writes in history lines (``conda-forge``, ``pkgs/main``)."""
        base = self.channel_base
        for prefix in ("https://conda.anaconda.org/", "https://repo.anaconda.com/"):
            if base.startswith(prefix):
                return base[len(prefix) :]
        return base

    @property
    def build_number(self) -> int:
        match = re.search(r"_(\d+)$", self.build)
        return int(match.group(1)) if match else 0

    def record(self) -> dict[str, Any]:
        """The JSON conda writes into conda-meta (the fields tools read, as conda sets them)."""
        channel = f"{self.channel_base}/{self.subdir}"
        fn = f"{self.dist}.conda"
        return {
            "arch": None if self.subdir == "noarch" else "x86_64",
            "build": self.build,
            "build_number": self.build_number,
            "channel": channel,
            "constrains": [],
            "depends": list(self.depends),
            "extracted_package_dir": f"/opt/conda/pkgs/{self.dist}",
            "features": "",
            "files": list(self.files),
            "fn": fn,
            "license": "BSD-3-Clause",
            "link": {"source": f"/opt/conda/pkgs/{self.dist}", "type": 1},
            "md5": "0" * 32,
            "name": self.name,
            "noarch": "python" if self.subdir == "noarch" else None,
            "package_tarball_full_path": f"/opt/conda/pkgs/{fn}",
            "paths_data": {
                "paths": [{"_path": p, "path_type": "hardlink"} for p in self.files],
                "paths_version": 1,
            },
            "platform": None if self.subdir == "noarch" else "linux",
            "requested_spec": self.requested_spec or "None",
            "sha256": "0" * 64,
            "size": 0,
            "subdir": self.subdir,
            "timestamp": 1767261600000,
            "track_features": "",
            "url": f"{channel}/{fn}",
            "version": self.version,
        }

    def history_line(self, sign: str = "+") -> str:
        return f"{sign}{self.channel_name}/{self.subdir}::{self.dist}"


def make_conda_prefix(
    path: str | os.PathLike[str],
    name: str | None = None,
    python: bool = True,
    packages: Iterable[PackageInput] = (),
    pip_packages: Iterable[tuple[str, str]] = (),
    history: Sequence[Mapping[str, Any] | str] | None = None,
    activate_scripts: Mapping[str, str] | None = None,
    deactivate_scripts: Mapping[str, str] | None = None,
    torch: Mapping[str, Any] | None = None,
) -> Path:
    """Lay out the conda prefix ``path`` (the environment's folder) and return it.

    - ``name``: the environment name written in the history's ``conda create -n``
      (default: the folder's name, which is how conda names environments).
    - ``python``: give the prefix a working interpreter (the host's Python, with
      ipykernel importable) and the ``python``/``pip`` records conda would have.
    - ``packages``: ``(name, version, build, channel)`` tuples or dicts of
      :class:`CondaPackage` fields; channel is a name (``conda-forge``, ``defaults``,
      ``pytorch``) or a full URL. Builds starting with ``py`` are Python packages and get a
      ``dist-info`` with ``INSTALLER=conda`` (metadata only, no code).
    - ``pip_packages``: ``(name, version)`` installed by pip (``INSTALLER=pip``).
    - ``history``: transactions, each a dict with optional ``date``, ``cmd``,
      ``conda_version``, ``add``/``remove`` (packages or ``channel/subdir::dist``
      strings), ``update_specs`` and ``remove_specs``; a string is written verbatim.
      Default: one ``conda create`` transaction adding every package.
    - ``activate_scripts``/``deactivate_scripts``: file name -> shell text, written to
      ``etc/conda/activate.d`` / ``deactivate.d``.
    - ``torch``: ``{"version", "cuda", "cudnn", "arch_list", "installer", "import_error"}``
      writes the fake torch (see fake_torch.py); installed by conda as the ``pytorch``
      package unless ``installer`` is ``pip``.
    """
    prefix = Path(path).absolute()
    name = name or prefix.name
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    records: list[CondaPackage] = []
    requested: list[str] = []
    if python:
        _install_python(prefix)
        records += _python_records()
        requested.append(f"python={PY_MM}")
    site_packages = prefix / SITE_PACKAGES
    for value in packages:
        package = CondaPackage.parse(value)
        package.requested_spec = package.requested_spec or f"{package.name}={package.version}"
        requested.append(package.requested_spec)
        if package.is_python_package and python and not package.files:
            files = write_dist_info(site_packages, package.name, package.version, "conda")
            package.files = [f"{SITE_PACKAGES}/{rel}" for rel in files]
        records.append(package)
    if torch is not None:
        spec = TorchSpec.from_dict(dict(torch), default_installer="conda")
        files = [f"{SITE_PACKAGES}/{rel}" for rel in write_fake_torch(site_packages, spec)]
        if spec.installer == "conda":
            torch_records = _pytorch_records(spec, files)
            requested += [pkg.requested_spec for pkg in torch_records if pkg.requested_spec]
            records += torch_records
    for pip_name, pip_version in pip_packages:
        write_dist_info(site_packages, pip_name, pip_version, "pip")
    for record in records:
        target = prefix / "conda-meta" / f"{record.dist}.json"
        target.write_text(json.dumps(record.record(), indent=2), encoding="utf-8")
    if history is None:
        history = [{"cmd": _create_cmd(name, requested), "add": records, "update_specs": requested}]
    (prefix / "conda-meta" / "history").write_text(_history_text(history), encoding="utf-8")
    _write_scripts(prefix / "etc" / "conda" / "activate.d", activate_scripts)
    _write_scripts(prefix / "etc" / "conda" / "deactivate.d", deactivate_scripts)
    return prefix


def _install_python(prefix: Path) -> None:
    """Copy the host interpreter in and link its standard library (see module docstring)."""
    bin_dir = prefix / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    executable = bin_dir / PY_DIR
    if not executable.exists():
        shutil.copy2(os.path.realpath(sys.executable), executable)
    for alias in ("python", "python3"):
        if not (bin_dir / alias).exists():
            (bin_dir / alias).symlink_to(PY_DIR)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    lib = prefix / "lib" / PY_DIR
    (lib / "site-packages").mkdir(parents=True, exist_ok=True)
    for entry in stdlib.iterdir():
        link = lib / entry.name
        if entry.name not in ("site-packages", "dist-packages") and not link.exists():
            link.symlink_to(entry)
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or stdlib / "lib-dynload")
    if not (lib / "lib-dynload").exists() and dynload.is_dir():
        (lib / "lib-dynload").symlink_to(dynload)
    _link_host_site_packages(prefix, lib / "site-packages")


def _link_host_site_packages(prefix: Path, conda_site: Path) -> None:
    """Make the host's packages (ipykernel) importable after the prefix's own.

    The copied interpreter runs the host's site.py, which picks the prefix's site dirs:
    ``lib/pythonX.Y/site-packages`` upstream, ``.../dist-packages`` on Debian's python.
    On the latter the conda-style site-packages is added through the .pth file too.
    """
    site_dirs = site.getsitepackages([str(prefix)])
    lines = [] if str(conda_site) in site_dirs else [str(conda_site)]
    target = conda_site if not lines else Path(site_dirs[0])
    lines += [p for p in host_site_packages() if p not in lines]
    target.mkdir(parents=True, exist_ok=True)
    (target / "_gpuenv_test_host_site.pth").write_text(
        "".join(f"{line}\n" for line in lines), encoding="utf-8"
    )


def host_site_packages() -> list[str]:
    """The running interpreter's site-packages folders (a venv's own when run from one)."""
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def _python_records() -> list[CondaPackage]:
    version = ".".join(str(part) for part in sys.version_info[:3])
    records = [
        CondaPackage(
            "python",
            version,
            "hab00c5b_0_cpython",
            "conda-forge",
            depends=["libgcc-ng >=12", "openssl >=3.2.0", f"python_abi {PY_MM}.* *_{PY_ABI}"],
            files=[f"bin/{PY_DIR}", "bin/python", "bin/python3", f"lib/{PY_DIR}/os.py"],
            requested_spec=f"python={PY_MM}",
        )
    ]
    for dist, build in (("pip", "pyh8b19718_1"), ("ipykernel", "pyh3099207_0")):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        records.append(CondaPackage(dist, version, build, "conda-forge", depends=["python >=3.8"]))
    return records


def _pytorch_records(spec: TorchSpec, files: list[str]) -> list[CondaPackage]:
    py_tag = f"py{PY_MM}"
    if spec.cuda:
        build = f"{py_tag}_cuda{spec.cuda}_cudnn{spec.cudnn_dotted or '0.0.0'}_0"
        depends = [f"pytorch-cuda >={spec.cuda},<{spec.cuda}.1", "pytorch-mutex 1.0 cuda"]
    else:
        build = f"{py_tag}_cpu_0"
        depends = ["cpuonly", "pytorch-mutex 1.0 cpu"]
    depends += [f"python >={PY_MM},<{PY_MM}.1.0a0", "filelock", "sympy", "networkx", "jinja2"]
    records = [
        CondaPackage(
            "pytorch",
            spec.public_version,
            build,
            "pytorch",
            depends=depends,
            files=files,
            requested_spec=f"pytorch={spec.public_version}",
        )
    ]
    if spec.cuda:
        records.append(
            CondaPackage(
                "pytorch-cuda",
                spec.cuda,
                "ha16c6d3_6",
                "pytorch",
                depends=[f"cuda-runtime >={spec.cuda},<{spec.cuda}.1"],
                requested_spec=f"pytorch-cuda={spec.cuda}",
            )
        )
    return records


def _create_cmd(name: str, specs: list[str]) -> str:
    return f"{CONDA_EXE} create -n {name} " + " ".join(specs)


def _history_text(history: Sequence[Mapping[str, Any] | str]) -> str:
    """``conda-meta/history`` in conda's format: one block per transaction.

    conda writes the spec lists with Python's repr (single quotes), so do we.
    """
    blocks = []
    for entry in history:
        if isinstance(entry, str):
            blocks.append(entry.rstrip("\n") + "\n")
            continue
        lines = [
            f"==> {entry.get('date', HISTORY_DATE)} <==",
            f"# cmd: {entry.get('cmd', CONDA_EXE + ' install')}",
            f"# conda version: {entry.get('conda_version', CONDA_VERSION)}",
        ]
        lines += [_dist_line(item, "-") for item in entry.get("remove", ())]
        lines += [_dist_line(item, "+") for item in entry.get("add", ())]
        if "update_specs" in entry:
            lines.append(f"# update specs: {list(entry['update_specs'])!r}")
        if "remove_specs" in entry:
            lines.append(f"# remove specs: {list(entry['remove_specs'])!r}")
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


def _dist_line(item: CondaPackage | PackageInput | str, sign: str) -> str:
    if isinstance(item, str):
        return f"{sign}{item}"
    package = item if isinstance(item, CondaPackage) else CondaPackage.parse(item)
    return package.history_line(sign)


def _write_scripts(folder: Path, scripts: Mapping[str, str] | None) -> None:
    if not scripts:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in scripts.items():
        (folder / file_name).write_text(text.rstrip("\n") + "\n", encoding="utf-8")
