"""Kernelspec manager (placeholder until provisioning lands)."""

from __future__ import annotations

from typing import Any

from jupyter_client.kernelspec import KernelSpecManager


class GpuEnvKernelSpecManager(KernelSpecManager):
    catalog: Any = None

    def use_catalog(self, catalog: Any) -> None:
        self.catalog = catalog
