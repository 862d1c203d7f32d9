"""The images laid out like published PyTorch images are laid out so, checked in containers.

These check the fixtures (pytorch_official_image, ngc_pytorch_image, tag_as), nothing of
the package.
"""

from __future__ import annotations

import json
import uuid

import docker
import pytest
from docker.errors import ImageNotFound

from tests.support.images import tag_as

pytestmark = pytest.mark.docker

PUBLISHED_OFFICIAL = "pytorch/pytorch:2.9.0-cuda12.1-cudnn9-runtime"
CONDA_SITE = "/opt/conda/lib/python3.11/site-packages"
NGC_DIST = "/usr/local/lib/python3.11/dist-packages"

# What the interpreter and torch report, from one run of `python -c PROBE`.
PROBE = """
import importlib.metadata, importlib.util, json, shutil, site, sys, sysconfig
import torch
try:
    dist = importlib.metadata.distribution("torch")
    dist_info = [dist.version, (dist.read_text("INSTALLER") or "").strip()]
except importlib.metadata.PackageNotFoundError:
    dist_info = None
print(json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "path": sys.path,
    "site_packages": site.getsitepackages(),
    "purelib": sysconfig.get_paths()["purelib"],
    "importable": {name: importlib.util.find_spec(name) is not None
                   for name in ("pip", "ipykernel", "jupyter_client")},
    "on_path": {name: shutil.which(name) for name in ("python", "python3", "pip", "conda")},
    "torch_file": torch.__file__,
    "torch_dist_info": dist_info,
    "version": torch.__version__,
    "version_py": [torch.version.__version__, torch.version.cuda, torch.version.git_version,
                   torch.version.hip, torch.version.debug],
    "cudnn": torch.backends.cudnn.version(),
    "arch_flags": torch._C._cuda_getArchFlags(),
    "cuda_available": torch.cuda.is_available(),
}))
"""

# Every conda-meta record (the fields tools read), whether its files exist, and the history.
CONDA_META = """
import glob, json, os
records = []
for path in sorted(glob.glob("/opt/conda/conda-meta/*.json")):
    with open(path) as handle:
        record = json.load(handle)
    records.append({
        "file": os.path.basename(path),
        "name": record["name"], "version": record["version"], "build": record["build"],
        "channel": record["channel"], "url": record["url"], "subdir": record["subdir"],
        "requested_spec": record["requested_spec"], "depends": record["depends"],
        "files_exist": all(os.path.isfile(os.path.join("/opt/conda", f))
                           for f in record["files"]),
        "n_files": len(record["files"]),
    })
with open("/opt/conda/conda-meta/history") as handle:
    history = handle.read()
print(json.dumps({"records": records, "history": history}))
"""


def run_json(client: docker.DockerClient, image: str, code: str) -> dict:
    out = client.containers.run(image, ["python", "-c", code], remove=True, network_disabled=True)
    return json.loads(out)


def run_shell(client: docker.DockerClient, image: str, script: str) -> str:
    out = client.containers.run(image, ["sh", "-c", script], remove=True, network_disabled=True)
    return out.decode()


@pytest.fixture(scope="module")
def official(docker_client, pytorch_official_image) -> dict:
    return run_json(docker_client, pytorch_official_image, PROBE)


@pytest.fixture(scope="module")
def ngc(docker_client, ngc_pytorch_image) -> dict:
    return run_json(docker_client, ngc_pytorch_image, PROBE)


def test_official_python_is_the_conda_prefix_own(official):
    assert official["executable"] == "/opt/conda/bin/python"
    assert official["prefix"] == official["base_prefix"] == "/opt/conda"
    assert official["purelib"] == CONDA_SITE
    assert official["site_packages"] == [CONDA_SITE]
    assert official["path"][-1] == CONDA_SITE
    assert not [p for p in official["path"] if "dist-packages" in p or p.startswith("/usr")]
    assert official["on_path"]["python"] == "/opt/conda/bin/python"
    assert official["on_path"]["python3"] == "/opt/conda/bin/python3"


def test_official_has_no_pip_no_ipykernel_no_system_python(
    docker_client, pytorch_official_image, official
):
    assert official["importable"] == {"pip": False, "ipykernel": False, "jupyter_client": False}
    assert official["on_path"]["pip"] is None and official["on_path"]["conda"] is None
    out = run_shell(
        docker_client,
        pytorch_official_image,
        "ls /usr/bin/python3 /usr/bin/pip3 /usr/local/bin/pip >/dev/null 2>&1 || echo absent; "
        f"ls {CONDA_SITE}",
    )
    assert out.split() == ["absent", "torch"]  # and no torch-*.dist-info beside it


def test_official_torch_is_owned_by_conda_only(official):
    assert official["torch_file"] == f"{CONDA_SITE}/torch/__init__.py"
    assert official["torch_dist_info"] is None  # no dist-info: only conda-meta knows torch


def test_official_conda_meta_records_and_history(docker_client, pytorch_official_image):
    meta = run_json(docker_client, pytorch_official_image, CONDA_META)
    records = {r["name"]: r for r in meta["records"]}
    for record in meta["records"]:
        assert record["file"] == f"{record['name']}-{record['version']}-{record['build']}.json"
        assert record["url"].startswith(record["channel"] + "/")
        assert record["files_exist"], record["name"]
    assert {r["channel"] for r in meta["records"]} == {
        "https://conda.anaconda.org/pytorch/linux-64",
        "https://conda.anaconda.org/nvidia/linux-64",
        "https://conda.anaconda.org/conda-forge/linux-64",
        "https://repo.anaconda.com/pkgs/main/linux-64",
    }
    pytorch = records["pytorch"]
    assert (pytorch["version"], pytorch["build"]) == ("2.9.0", "py3.11_cuda12.1_cudnn9.1.0_0")
    assert pytorch["channel"] == "https://conda.anaconda.org/pytorch/linux-64"
    assert pytorch["n_files"] > 0 and pytorch["requested_spec"] == "pytorch=2.9.0"
    assert records["pytorch-cuda"]["version"] == "12.1"
    assert "cuda-runtime >=12.1,<12.1.1" in records["pytorch-cuda"]["depends"]
    assert records["cuda-runtime"]["channel"] == "https://conda.anaconda.org/nvidia/linux-64"
    assert records["libcublas"]["channel"] == "https://conda.anaconda.org/nvidia/linux-64"
    assert records["python"]["channel"] == "https://repo.anaconda.com/pkgs/main/linux-64"
    assert records["python"]["version"].startswith("3.11.")
    assert records["python"]["requested_spec"] == "python=3.11"
    assert records["ca-certificates"]["channel"].startswith("https://conda.anaconda.org/conda-f")
    assert not {"pip", "ipykernel", "conda"} & set(records)

    history = meta["history"]
    assert history.count("==> ") == 2
    assert "# cmd: /opt/conda/bin/conda install -y python=3.11\n" in history
    assert "+pkgs/main/linux-64::python-3.11." in history
    assert "+pytorch/linux-64::pytorch-2.9.0-py3.11_cuda12.1_cudnn9.1.0_0\n" in history
    assert "+nvidia/linux-64::cuda-runtime-12.1.0-0\n" in history
    assert "# update specs: ['pytorch=2.9.0', 'pytorch-cuda=12.1']\n" in history
    # every record was added by a transaction, and nothing else was
    added = {line[1:].split("::")[1] for line in history.splitlines() if line.startswith("+")}
    assert added == {r["file"][: -len(".json")] for r in meta["records"]}


def test_official_torch_build(official):
    assert official["version"] == "2.9.0"
    version, cuda, git_version, hip, debug = official["version_py"]
    assert (version, cuda, hip, debug) == ("2.9.0", "12.1", None, False)
    assert len(git_version) == 40
    assert official["cudnn"] == 90100
    flags = official["arch_flags"].split()
    assert {"sm_80", "sm_86", "sm_90"} <= set(flags) and flags[0] == "sm_50"
    assert official["cuda_available"] is False  # no GPU in the container


def test_ngc_python_is_the_system_python(ngc):
    assert ngc["executable"] == "/usr/bin/python"
    assert ngc["prefix"] == ngc["base_prefix"] == "/usr"
    assert NGC_DIST in ngc["path"] and NGC_DIST in ngc["site_packages"]
    assert ngc["on_path"]["python3"] == "/usr/bin/python3"
    assert ngc["on_path"]["pip"] == "/usr/local/bin/pip"
    assert ngc["importable"] == {"pip": True, "ipykernel": True, "jupyter_client": True}


def test_ngc_torch_build_installed_by_pip(ngc):
    version = "2.5.0a0+872d972e41.nv24.08"
    assert ngc["torch_file"] == f"{NGC_DIST}/torch/__init__.py"
    # The metadata has the PEP 440 normal form, as NGC's does: "nv24.08" -> "nv24.8".
    assert ngc["torch_dist_info"] == ["2.5.0a0+872d972e41.nv24.8", "pip"]
    assert ngc["version"] == version
    assert ngc["version_py"][:2] == [version, "12.6"]
    assert ngc["version_py"][2].startswith("872d972e41")
    assert ngc["version_py"][3:] == [None, False]
    assert ngc["cudnn"] == 90300
    flags = ngc["arch_flags"].split()
    assert {"sm_80", "sm_86", "sm_90"} <= set(flags) and flags[-1] == "compute_90"
    assert ngc["cuda_available"] is False


def test_ngc_pip_knows_torch(docker_client, ngc_pytorch_image):
    out = run_shell(docker_client, ngc_pytorch_image, "pip show torch 2>&1")
    assert "Version: 2.5.0a0+872d972e41.nv24.8\n" in out
    assert f"Location: {NGC_DIST}" in out


OFFICIAL_ENV = {
    "PATH": "/opt/conda/bin:/usr/local/nvidia/bin:/usr/local/cuda/bin:"
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTORCH_VERSION": "2.9.0",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
}
NGC_ENV = {
    "NVIDIA_PYTORCH_VERSION": "24.08",
    "PYTORCH_VERSION": "2.5.0a0+872d972e41",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "CUDA_VERSION": "12.6.0",
}


@pytest.mark.parametrize(
    ("fixture", "expected_env", "exact"),
    [("pytorch_official_image", OFFICIAL_ENV, True), ("ngc_pytorch_image", NGC_ENV, False)],
)
def test_image_config(request, docker_client, fixture, expected_env, exact):
    config = docker_client.images.get(request.getfixturevalue(fixture)).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    if exact:
        assert env == expected_env
    else:
        assert expected_env.items() <= env.items()
    assert "HOME" not in env and "LANG" not in env  # nothing of the test base's config
    assert config["WorkingDir"] == "/workspace"
    assert config["User"] == ""
    assert not [key for key in config["Labels"] or {} if "gpuenv" in key]
    out = run_shell(docker_client, request.getfixturevalue(fixture), "id -u; pwd")
    assert out.split() == ["0", "/workspace"]


def test_tag_as_adds_the_published_name_and_takes_it_away(docker_client, pytorch_official_image):
    image = docker_client.images.get(pytorch_official_image)
    try:
        before = docker_client.images.get(PUBLISHED_OFFICIAL).id
    except ImageNotFound:
        before = None
    with tag_as(pytorch_official_image, PUBLISHED_OFFICIAL) as reference:
        assert reference == PUBLISHED_OFFICIAL
        assert docker_client.images.get(PUBLISHED_OFFICIAL).id == image.id
        out = docker_client.containers.run(
            PUBLISHED_OFFICIAL, ["python", "-c", "import sys; print(sys.prefix)"], remove=True
        )
        assert out.decode().strip() == "/opt/conda"
    try:
        after = docker_client.images.get(PUBLISHED_OFFICIAL).id
    except ImageNotFound:
        after = None
    assert after == before
    assert pytorch_official_image in docker_client.images.get(image.id).tags


def test_tag_as_gives_a_taken_name_back(docker_client, pytorch_official_image, ngc_pytorch_image):
    reference = f"gpuenv-test/tag-as-check:{uuid.uuid4().hex[:12]}"
    ngc_id = docker_client.images.get(ngc_pytorch_image).id
    docker_client.images.get(ngc_id).tag(*reference.split(":"))
    try:
        with tag_as(pytorch_official_image, reference, client=docker_client):
            official_id = docker_client.images.get(pytorch_official_image).id
            assert docker_client.images.get(reference).id == official_id
            with pytest.raises(RuntimeError, match="already active"):
                with tag_as(ngc_pytorch_image, reference):
                    pass
        assert docker_client.images.get(reference).id == ngc_id
    finally:
        docker_client.images.remove(reference, noprune=True)
