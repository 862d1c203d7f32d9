"""The harness's fixtures produce what they promise (real interpreters, conda's layout)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

TORCH_CUDA = {"version": "2.9.0+cu121", "cuda": "12.1", "cudnn": "90100"}


def run_python(prefix: Path, code: str) -> str:
    result = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_conda_prefix_is_a_python_prefix_with_ipykernel(conda_prefix_factory, tmp_path):
    prefix = conda_prefix_factory(tmp_path / "envs" / "torch121", torch=TORCH_CUDA)
    out = run_python(
        prefix,
        "import sys, json, importlib.util, torch\n"
        "print(json.dumps([sys.prefix, importlib.util.find_spec('ipykernel') is not None,\n"
        "  torch.__version__, torch.version.cuda, torch.backends.cudnn.version(),\n"
        "  torch._C._cuda_getArchFlags(), torch.cuda.is_available(),\n"
        "  torch.cuda.get_arch_list()]))",
    )
    sys_prefix, has_ipykernel, version, cuda, cudnn, flags, available, arch_list = json.loads(out)
    assert Path(sys_prefix) == prefix
    assert has_ipykernel
    assert (version, cuda, cudnn, available, arch_list) == ("2.9.0+cu121", "12.1", 90100, False, [])
    assert flags.split()[0] == "sm_50" and "sm_90" in flags.split()
    assert not (prefix / "pyvenv.cfg").exists()


def test_conda_prefix_records_and_history(conda_prefix_factory, tmp_path):
    prefix = conda_prefix_factory(
        tmp_path / "ml",
        packages=[
            ("numpy", "1.26.4", "py311h64a7726_0", "conda-forge"),
            ("cudatoolkit", "11.8.0", "h6a678d5_0", "defaults"),
        ],
        pip_packages=[("einops", "0.8.0")],
        activate_scripts={"cuda.sh": "export CUDA_HOME=/usr/local/cuda-12.1"},
        torch=TORCH_CUDA,
    )
    meta = prefix / "conda-meta"
    pytorch = json.loads((meta / "pytorch-2.9.0-py3.11_cuda12.1_cudnn9.1.0_0.json").read_text())
    assert pytorch["channel"] == "https://conda.anaconda.org/pytorch/linux-64"
    assert "lib/python3.11/site-packages/torch/version.py" in pytorch["files"]
    cudatoolkit = json.loads((meta / "cudatoolkit-11.8.0-h6a678d5_0.json").read_text())
    assert cudatoolkit["channel"] == "https://repo.anaconda.com/pkgs/main/linux-64"
    assert cudatoolkit["build_number"] == 0 and cudatoolkit["subdir"] == "linux-64"
    site = prefix / "lib/python3.11/site-packages"
    assert (site / "numpy-1.26.4.dist-info/INSTALLER").read_text() == "conda\n"
    assert (site / "einops-0.8.0.dist-info/INSTALLER").read_text() == "pip\n"
    assert not (site / "cudatoolkit-11.8.0.dist-info").exists()
    history = (meta / "history").read_text().splitlines()
    assert history[0] == "==> 2026-01-01 10:00:00 <=="
    assert history[1].startswith("# cmd: /opt/conda/bin/conda create -n ml ")
    assert "+pytorch/linux-64::pytorch-2.9.0-py3.11_cuda12.1_cudnn9.1.0_0" in history
    assert "+pkgs/main/linux-64::cudatoolkit-11.8.0-h6a678d5_0" in history
    assert history[-1].startswith("# update specs: ['python=3.11', 'numpy=1.26.4'")
    script = prefix / "etc/conda/activate.d/cuda.sh"
    assert script.read_text() == "export CUDA_HOME=/usr/local/cuda-12.1\n"


def test_conda_prefix_custom_history_and_broken_torch(conda_prefix_factory, tmp_path):
    prefix = conda_prefix_factory(
        tmp_path / "broken",
        torch={"version": "2.1.0", "cuda": "11.8", "cudnn": 8700, "import_error": "libcudnn.so.8"},
        history=[
            {"cmd": "conda create -n broken python=3.11", "update_specs": ["python=3.11"]},
            {
                "date": "2026-01-02 09:00:00",
                "cmd": "conda remove numpy",
                "remove": ["conda-forge/linux-64::numpy-1.26.4-py311h64a7726_0"],
                "remove_specs": ["numpy"],
            },
        ],
    )
    text = (prefix / "conda-meta/history").read_text()
    assert "==> 2026-01-02 09:00:00 <==\n# cmd: conda remove numpy\n" in text
    assert "-conda-forge/linux-64::numpy-1.26.4-py311h64a7726_0\n# remove specs: ['numpy']" in text
    out = run_python(
        prefix,
        "import importlib.util, pathlib\n"
        "spec = importlib.util.find_spec('torch')\n"
        "ns = {}\n"
        "exec(pathlib.Path(spec.submodule_search_locations[0], 'version.py').read_text(), ns)\n"
        "try:\n    import torch\nexcept ImportError as exc:\n    print(ns['cuda'], exc)",
    )
    assert out == "11.8 libcudnn.so.8"


def test_conda_prefix_without_python(conda_prefix_factory, tmp_path):
    prefix = conda_prefix_factory(
        tmp_path / "r-env",
        python=False,
        packages=[("r-base", "4.3.3", "hb8ee39d_0", "conda-forge")],
    )
    assert not (prefix / "bin" / "python").exists()
    assert [p.name for p in (prefix / "conda-meta").glob("*.json")] == [
        "r-base-4.3.3-hb8ee39d_0.json"
    ]


@pytest.mark.parametrize("ipykernel", [True, False])
def test_venv_factory(venv_factory, tmp_path, ipykernel):
    prefix = venv_factory(tmp_path / "v", ipykernel=ipykernel, torch={"version": "2.13.0+cpu"})
    assert (prefix / "pyvenv.cfg").is_file()
    out = run_python(
        prefix,
        "import sys, importlib.util, importlib.metadata as md, torch\n"
        "print(sys.prefix, importlib.util.find_spec('ipykernel') is not None,"
        " torch.version.cuda, md.distribution('torch').read_text('INSTALLER').strip())",
    )
    assert out == f"{prefix} {ipykernel} None pip"


@pytest.mark.docker
def test_docker_client_answers(docker_client):
    assert docker_client.ping()


def run_in_image(client, image: str, code: str) -> str:
    """Run python3 as an unprivileged uid with no home, as kernels run."""
    output = client.containers.run(
        image, ["python3", "-c", code], user="12345:12345", remove=True, network_mode="none"
    )
    return output.decode().strip()


@pytest.mark.docker
def test_python_kernel_image_runs_ipykernel_as_any_uid(docker_client, python_kernel_image):
    assert python_kernel_image.startswith("gpuenv-test/python-kernel:")
    code = (
        "import sys, ipykernel.kernelapp as k; app = k.IPKernelApp.instance();"
        " print(sys.version_info[:2] == (3, 11), app.connection_file == '', k.__name__)"
    )
    assert run_in_image(docker_client, python_kernel_image, code) == "True True ipykernel.kernelapp"
    labels = docker_client.images.get(python_kernel_image).labels
    assert labels["org.opencontainers.image.title"].startswith("python3 with ipykernel")


@pytest.mark.docker
def test_bare_python_image_has_no_ipykernel(docker_client, bare_python_image):
    code = "import importlib.util as u; print(u.find_spec('ipykernel'), u.find_spec('pip'))"
    assert run_in_image(docker_client, bare_python_image, code) == "None None"


@pytest.mark.docker
def test_torch_cpu_image_is_real_cpu_torch(docker_client, torch_cpu_image):
    code = (
        "import torch, ipykernel; x = torch.ones(2, 2);"
        " print(torch.__version__, torch.version.cuda, torch.cuda.is_available(),"
        " float((x @ x).sum()), hasattr(torch._C, '_cuda_getArchFlags'))"
    )
    out = run_in_image(docker_client, torch_cpu_image, code)
    assert out == "2.13.0+cpu None False 8.0 False"


def test_fake_cpu_torch_matches_real_cpu_build(venv_factory, tmp_path):
    # The same facts test_torch_cpu_image_is_real_cpu_torch reads from the real wheel.
    prefix = venv_factory(tmp_path / "cpu", ipykernel=False, torch={"version": "2.13.0+cpu"})
    out = run_python(
        prefix,
        "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(),"
        " torch.backends.cudnn.version(), hasattr(torch._C, '_cuda_getArchFlags'))",
    )
    assert out == "2.13.0+cpu None False None False"
