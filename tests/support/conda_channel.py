"""A local conda channel of real packages, made here and indexed by rattler (no network).

Packages are ``.tar.bz2`` archives laid out as conda-build writes them: the payload, then
``info/index.json``, ``info/paths.json`` (sha256 and size of each file, ``softlink`` for
links) and ``info/files``. ``rattler.index_fs`` writes each subdir's ``repodata.json``, so
conda, mamba, micromamba and rattler all read the channel as they read conda-forge.

``python_channel`` adds what makes a working interpreter in a created environment: a
``python`` package whose ``bin/python`` links to this machine's ``/usr/bin/python3.11``
with a ``pyvenv.cfg`` beside it (so ``sys.prefix`` is the environment), and a ``pip``
package made from pip's own wheel, as conda-forge's pip is.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HOST_PYTHON = Path("/usr/bin/python3.11")
SUBDIR = "linux-64"
TIMESTAMP = 1767261600000  # rattler's solver wants one on every record


@dataclass(frozen=True)
class Link:
    """A symbolic link in a package's payload, pointing at ``target``."""

    target: str


@dataclass
class ChannelPackage:
    """One package: ``files`` maps paths in the prefix to their bytes (or a Link)."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    depends: list[str] = field(default_factory=list)
    files: Mapping[str, bytes | Link] = field(default_factory=dict)
    noarch: bool = True

    @property
    def subdir(self) -> str:
        return "noarch" if self.noarch else SUBDIR

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"

    def index_json(self) -> dict[str, object]:
        index: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "license": "BSD-3-Clause",
            "subdir": self.subdir,
            "timestamp": TIMESTAMP,
        }
        if self.noarch:
            index["noarch"] = "generic"
        else:
            index.update(arch="x86_64", platform="linux")
        return index

    def write(self, channel: Path) -> Path:
        """The archive under ``channel/<subdir>/``."""
        folder = channel / self.subdir
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.filename
        paths = []
        with tarfile.open(target, "w:bz2") as tar:
            for path, content in sorted(self.files.items()):
                info = tarfile.TarInfo(path)
                info.mtime = TIMESTAMP // 1000
                if isinstance(content, Link):
                    info.type, info.linkname = tarfile.SYMTYPE, content.target
                    tar.addfile(info)
                    paths.append({"_path": path, "path_type": "softlink"})
                    continue
                info.size, info.mode = len(content), 0o755 if path.startswith("bin/") else 0o644
                tar.addfile(info, io.BytesIO(content))
                paths.append(
                    {
                        "_path": path,
                        "path_type": "hardlink",
                        "sha256": hashlib.sha256(content).hexdigest(),
                        "size_in_bytes": len(content),
                    }
                )
            meta = {
                "info/index.json": json.dumps(self.index_json(), indent=2),
                "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2),
                "info/files": "".join(f"{p['_path']}\n" for p in paths),
            }
            for path, text in meta.items():
                data = text.encode()
                info = tarfile.TarInfo(path)
                info.size, info.mtime = len(data), TIMESTAMP // 1000
                tar.addfile(info, io.BytesIO(data))
        return target


def build_channel(channel: Path, packages: Iterable[ChannelPackage]) -> Path:
    """Write every package and index the channel; answers the channel folder."""
    channel.mkdir(parents=True, exist_ok=True)
    (channel / "noarch").mkdir(exist_ok=True)
    (channel / SUBDIR).mkdir(exist_ok=True)
    for package in packages:
        package.write(channel)
    index_channel(channel)
    return channel


def index_channel(channel: Path) -> None:
    """repodata.json for each subdir, written by rattler's indexer."""
    from rattler import Platform
    from rattler.index import index_fs

    for subdir in ("noarch", SUBDIR):
        asyncio.run(
            index_fs(
                channel,
                target_platform=Platform(subdir),
                write_zst=False,
                write_shards=False,
                force=True,
            )
        )


def python_package(version: str, python: Path = HOST_PYTHON) -> ChannelPackage:
    """``python``: the host's interpreter behind a venv-style ``pyvenv.cfg`` in the prefix."""
    major_minor = ".".join(version.split(".")[:2])
    cfg = (
        f"home = {python.parent}\ninclude-system-site-packages = false\n"
        f"version = {version}\nexecutable = {python}\n"
    )
    return ChannelPackage(
        "python",
        version,
        build="h0_0_cpython",
        files={
            "bin/python": Link(str(python)),
            "bin/python3": Link("python"),
            f"bin/python{major_minor}": Link("python"),
            "pyvenv.cfg": cfg.encode(),
            f"lib/python{major_minor}/site-packages/README.txt": b"site-packages\n",
        },
        noarch=False,
    )


def wheel_package(
    wheel: Path, name: str, version: str, python_mm: str = "3.11", build: str = "pyh0_0"
) -> ChannelPackage:
    """A pure-Python wheel unpacked into site-packages (how conda-forge packages pip)."""
    site = f"lib/python{python_mm}/site-packages"
    files: dict[str, bytes | Link] = {}
    with zipfile.ZipFile(wheel) as archive:
        for item in archive.infolist():
            if not item.is_dir():
                files[f"{site}/{item.filename}"] = archive.read(item)
    record = next(p for p in files if p.endswith(".dist-info/RECORD"))
    files[record.replace("/RECORD", "/INSTALLER")] = b"conda\n"
    return ChannelPackage(
        name, version, build=build, depends=[f"python {python_mm}.*"], files=files, noarch=False
    )


WHEELHOUSE = Path(os.environ.get("GPUENV_TEST_WORK_DIR", "/var/tmp/gpuenv-test")) / "wheelhouse"
WHEELHOUSE_REQUIREMENTS = ("pip", "ipykernel")


class ChannelUnavailable(Exception):
    """The machine cannot make the channel (no python3.11 to link to, no wheels)."""


def host_python_version(python: Path = HOST_PYTHON) -> str:
    if not os.access(python, os.X_OK):
        raise ChannelUnavailable(f"{python} is missing: the test python package links to it")
    done = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def ensure_wheelhouse(folder: Path = WHEELHOUSE) -> Path:
    """pip's and ipykernel's cp311 wheels, fetched once on the host with ``pip download``
    (kept between runs, like the test images' wheels)."""
    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
        "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
        "--abi", "cp311", "--platform", "manylinux2014_x86_64", "--platform",
        "manylinux_2_34_x86_64", "-d", str(folder), *WHEELHOUSE_REQUIREMENTS,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise ChannelUnavailable(f"pip download failed: {done.stderr.strip()[-500:]}")
    marker.write_text("ok\n")
    return folder


def pip_wheel(wheelhouse: Path) -> tuple[Path, str]:
    wheel = sorted(wheelhouse.glob("pip-*-py3-none-any.whl"))[-1]
    return wheel, wheel.name.split("-")[1]


def demo_packages(wheelhouse: Path) -> list[ChannelPackage]:
    """The packages the create tests solve with:

    - ``python`` (the host's 3.11) and ``pip`` (its wheel): a working interpreter;
    - ``gpuenv-demo 1.0`` in two builds, ``cuda_1`` (needs ``__cuda >=12``, preferred by
      its build number) and ``cpu_0``; each writes which it is to share/gpuenv-demo/variant;
    - ``gpuenv-lib`` 1.0 and 2.0, ``gpuenv-app`` (needs gpuenv-lib <2) and ``gpuenv-tool``
      (needs any gpuenv-lib): ``gpuenv-lib >=2`` with ``gpuenv-app`` conflicts.
    """
    wheel, pip_version = pip_wheel(wheelhouse)

    def data(name: str, text: str) -> dict[str, bytes | Link]:
        return {f"share/{name}/variant": f"{text}\n".encode()}

    cuda = ["__cuda >=12"]
    return [
        python_package(host_python_version()),
        wheel_package(wheel, "pip", pip_version),
        ChannelPackage("gpuenv-demo", "1.0", "cuda_1", 1, cuda, data("gpuenv-demo", "cuda")),
        ChannelPackage("gpuenv-demo", "1.0", "cpu_0", 0, [], data("gpuenv-demo", "cpu")),
        ChannelPackage("gpuenv-lib", "1.0", "0", 0, [], data("gpuenv-lib", "1.0")),
        ChannelPackage("gpuenv-lib", "2.0", "0", 0, [], data("gpuenv-lib", "2.0")),
        ChannelPackage("gpuenv-app", "1.0", "0", 0, ["gpuenv-lib <2"], data("gpuenv-app", "1.0")),
        ChannelPackage("gpuenv-tool", "1.0", "0", 0, ["gpuenv-lib"], data("gpuenv-tool", "1.0")),
    ]  # fmt: skip
