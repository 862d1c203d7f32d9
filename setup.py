"""Ship the prebuilt JupyterLab extension as data files (setup.cfg cannot glob recursively)."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
LABEXT = HERE / "jupyter_gpuenv" / "labextension"
TARGET = "share/jupyter/labextensions/jupyter-gpuenv"

data_files = [
    ("etc/jupyter/jupyter_server_config.d",
     ["jupyter-config/jupyter_server_config.d/jupyter_gpuenv.json"]),
]
if LABEXT.is_dir():
    by_dir: dict[str, list[str]] = {}
    for path in sorted(LABEXT.rglob("*")):
        if path.is_file():
            rel = path.parent.relative_to(LABEXT)
            by_dir.setdefault(str(Path(TARGET) / rel), []).append(str(path.relative_to(HERE)))
    data_files.extend(sorted(by_dir.items()))

setup(data_files=data_files)
