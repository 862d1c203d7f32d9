"""Real Jupyter tools (jupyter execute, papermill, jupyter console) as separate processes.

Each test gets its own Jupyter folders: a config folder holding a
``jupyter_server_config.py`` with ``c.GpuEnv`` (what the provisioners read when a tool
that knows nothing of gpuenv starts them), and a prefix that ``jupyter gpuenv kernelspecs
install --prefix`` fills and ``JUPYTER_PATH`` points at, exactly as a user would set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_gpuenv.docker import labels

REPO = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT = 420


@dataclass
class JupyterSetup:
    """The environment variables of one user's Jupyter folders, and the tools run there."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(
        self, *argv: str, stdin: str | None = None, ok: bool = True, timeout: float = TOOL_TIMEOUT
    ) -> str:
        """Run a tool to completion (bounded) and return its stdout.

        The tool must succeed (``ok``) or fail (``ok=False``; then stdout and stderr are
        returned); anything else fails the test with both streams.
        """
        proc = subprocess.run(
            list(argv),
            input=stdin,
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        report = f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        assert (proc.returncode == 0) == ok, report
        return proc.stdout if ok else proc.stdout + proc.stderr

    def install_kernelspecs(self) -> dict[str, dict[str, Any]]:
        """``jupyter gpuenv kernelspecs install --prefix``: kernel name -> its kernel.json."""
        prefix = self.root / "jupyter-prefix"
        self.run("jupyter", "gpuenv", "kernelspecs", "install", "--prefix", str(prefix))
        for folder in sorted((prefix / "share" / "jupyter" / "kernels").iterdir()):
            self.kernels[folder.name] = json.loads((folder / "kernel.json").read_text())
        return self.kernels

    def kernel_of_kind(self, kind: str) -> tuple[str, str]:
        """The one installed kernel of ``kind``: (kernel name, environment id)."""
        (name,) = [n for n, s in self.kernels.items() if s["metadata"]["gpuenv"]["kind"] == kind]
        return name, self.kernels[name]["metadata"]["gpuenv"]["environment_id"]


@pytest.fixture
def jupyter_setup(tmp_path: Path) -> Callable[..., JupyterSetup]:
    """``setup(**gpuenv_settings) -> JupyterSetup`` with the specs already installed."""

    def make(**gpuenv: Any) -> JupyterSetup:
        settings = {
            "conda_envs_dirs": [],
            "venv_dirs": [],
            "docker_images": {},
            "docker_label_discovery": False,
            "docker_discover_pytorch_images": False,
            **gpuenv,
        }
        config_dir = tmp_path / "jupyter-config"
        config_dir.mkdir()
        (config_dir / "jupyter_server_config.py").write_text(
            "".join(f"c.GpuEnv.{key} = {value!r}\n" for key, value in settings.items())
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
        env.update(
            JUPYTER_CONFIG_DIR=str(config_dir),
            JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
            JUPYTER_PATH=str(tmp_path / "jupyter-prefix" / "share" / "jupyter"),
            JUPYTER_PLATFORM_DIRS="0",
            # The tools of the Python running the tests, whatever else is on PATH.
            PATH=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        )
        setup = JupyterSetup(root=tmp_path, env=env)
        setup.install_kernelspecs()
        return setup

    return make


def write_notebook(path: Path, *cells: nbformat.NotebookNode) -> Path:
    """A v4 notebook of ``cells`` at ``path``, saved as with the default Python kernel.

    Tools pick the kernel from the command line; papermill still reads the language from
    the notebook's metadata, as every notebook saved by Jupyter has it.
    """
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


def stream_text(path: Path) -> str:
    """Everything the executed notebook's cells printed to stdout."""
    nb = nbformat.read(path, as_version=4)
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def unique_name(prefix: str) -> str:
    """A docker_images key of this test alone: its environment id (and container labels)
    then differ from those of any other test running at the same time on this engine."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def containers_of(client: Any, environment_id: str) -> list[Any]:
    """Containers (running or not) of one environment, whoever started them."""
    return client.containers.list(
        all=True, filters={"label": f"{labels.ENVIRONMENT_ID}={environment_id}"}
    )
