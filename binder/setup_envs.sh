#!/usr/bin/env bash
# Create small demo environments under ~/envs and point jupyter-gpuenv at them.
# binder/postBuild runs it on mybinder; it only writes under $HOME, so it is safe to
# run anywhere. Settings (environment variables):
#   GPUENV_DEMO_ROOT   where the environments go (default: ~/envs)
#   GPUENV_DEMO_PIP    pip arguments installed into the demo venv (e.g. the torch CPU build)
#   GPUENV_DEMO_CONDA  1: also create a conda env with ipykernel when mamba/conda exists
#   PYTHON             the interpreter the venv is made from (default: python3)
set -euo pipefail

ROOT="${GPUENV_DEMO_ROOT:-$HOME/envs}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/venvs/demo"
CONDA_ENV="$ROOT/conda/demo-conda"
mkdir -p "$ROOT/venvs" "$ROOT/conda"

# --system-site-packages reuses the image's ipykernel: the venv needs no download.
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c "import ipykernel" 2>/dev/null; then
    # $PYTHON is itself a venv, whose packages are not "system site packages": link them.
    SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$PYTHON" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' \
        | sort -u > "$SITE/_gpuenv_demo_parent.pth"
fi
if [ -n "${GPUENV_DEMO_PIP:-}" ]; then
    # shellcheck disable=SC2086  # a list of pip arguments: word splitting is wanted
    "$VENV/bin/python" -m pip install --no-cache-dir $GPUENV_DEMO_PIP
fi

if [ "${GPUENV_DEMO_CONDA:-0}" = 1 ]; then
    CONDA="$(command -v mamba || command -v conda || true)"
    if [ -n "$CONDA" ] && [ ! -d "$CONDA_ENV/conda-meta" ]; then
        "$CONDA" create --yes --quiet --prefix "$CONDA_ENV" python=3.11 ipykernel
    fi
fi

# Appended to ~/.jupyter/jupyter_server_config.py (created if missing); an existing file
# keeps its own settings, and a second run changes nothing.
CONFIG="$HOME/.jupyter/jupyter_server_config.py"
MARKER="# jupyter-gpuenv demo environments (binder/setup_envs.sh)"
mkdir -p "$HOME/.jupyter"
if ! grep -qF "$MARKER" "$CONFIG" 2>/dev/null; then
    cat >> "$CONFIG" <<PY

$MARKER
c.GpuEnv.venv_dirs = ["$ROOT/venvs"]
c.GpuEnv.conda_envs_dirs = ["$ROOT/conda"]
c.GpuEnv.docker_label_discovery = False
c.GpuEnv.docker_discover_pytorch_images = False
PY
fi
echo "jupyter-gpuenv demo environments in $ROOT, configured in $CONFIG"
