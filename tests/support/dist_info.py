"""Installed-package metadata (``*.dist-info``) as pip and conda leave it in site-packages."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path


def dist_info_name(name: str, version: str) -> str:
    """``<name>-<version>.dist-info`` with the name normalised as wheels do (PEP 427)."""
    return f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"


def write_dist_info(
    site_packages: Path,
    name: str,
    version: str,
    installer: str,
    package_files: list[str] | None = None,
    requires: list[str] | None = None,
) -> list[str]:
    """Write METADATA, INSTALLER and RECORD; return the written paths relative to site_packages.

    ``installer`` is what ``importlib.metadata`` reports through INSTALLER: ``pip`` for
    pip installs, ``conda`` for files that came from a conda package.
    """
    folder = site_packages / dist_info_name(name, version)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {req}" for req in requires or []]
    (folder / "METADATA").write_text("\n".join(metadata) + "\n", encoding="utf-8")
    (folder / "INSTALLER").write_text(installer + "\n", encoding="utf-8")
    written = [*(package_files or []), f"{folder.name}/METADATA", f"{folder.name}/INSTALLER"]
    rows = [_record_row(site_packages, rel) for rel in written]
    rows.append(f"{folder.name}/RECORD,,")
    (folder / "RECORD").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [*written, f"{folder.name}/RECORD"]


def _record_row(site_packages: Path, rel: str) -> str:
    data = (site_packages / rel).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}"
